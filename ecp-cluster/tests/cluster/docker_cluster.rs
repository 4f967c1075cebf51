//! The Docker cluster backend against the machine's real Docker engine.
//!
//! No EMQX image can be pulled here, so the nodes run a stand-in built `FROM scratch` from
//! ecp-testkit's static `sim-edge` (it ignores the EMQX environment). What this proves is the
//! container plan and its lifecycle on a real engine: network, names, environment (static seeds,
//! roles, cookie, listeners), bootstrap files, resources, published ports, scaling, rolling image
//! changes with rollback, stop/start and delete. EMQX forming a cluster from that plan is not
//! proven here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ecp_cluster::docker::{DockerClusterConfig, DockerClusterDriver, LABEL_CLUSTER};
use ecp_cluster::{ApiKey, ClusterDriver, ClusterRef, ClusterSpec, ClusterStatus, Listener, ListenerProtocol, NetworkMode, Resources};
use ecp_hosting::docker::DockerAddress;
use ecp_testkit::docker::{docker, require_engine, run, sim_images};
use secrecy::SecretString;

/// Removes whatever a test left behind, even when it fails.
struct Cleanup(ClusterRef);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let label = format!("label={LABEL_CLUSTER}={}", self.0.id);
        if let Ok(out) = run(docker().args(["ps", "-aq", "--filter", &label]), Duration::from_secs(30)) {
            for id in out.stdout.split_whitespace() {
                let _ = run(docker().args(["rm", "-f", id]), Duration::from_secs(30));
            }
        }
        if let Ok(out) = run(docker().args(["network", "ls", "-q", "--filter", &label]), Duration::from_secs(30)) {
            for id in out.stdout.split_whitespace() {
                let _ = run(docker().args(["network", "rm", id]), Duration::from_secs(30));
            }
        }
    }
}

fn inspect(name: &str, format: &str) -> String {
    let out = run(docker().args(["inspect", "--format", format, name]), Duration::from_secs(30)).unwrap();
    assert!(out.success, "docker inspect {name}: {}", out.stderr);
    out.stdout.trim().to_owned()
}

fn containers(cluster: &ClusterRef) -> Vec<String> {
    let label = format!("label={LABEL_CLUSTER}={}", cluster.id);
    let out = run(docker().args(["ps", "-a", "--format", "{{.Names}}", "--filter", &label]), Duration::from_secs(30)).unwrap();
    let mut names: Vec<String> = out.stdout.split_whitespace().map(str::to_owned).collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_lives_its_whole_life_on_the_real_engine() {
    if !require_engine() {
        return;
    }
    let images = tokio::task::spawn_blocking(sim_images).await.unwrap().expect("stand-in images");
    let config = DockerClusterConfig::builder(DockerAddress::Local)
        .ready_timeout(Duration::from_secs(30))
        .settle(Duration::from_secs(1))
        .stop_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let driver: Arc<dyn ClusterDriver> = Arc::new(DockerClusterDriver::new(config).unwrap());
    let cluster = ClusterRef::new(ecp_core::ClusterId::new(), ecp_core::ProjectId::new(), "plant mqtt");
    let _cleanup = Cleanup(cluster.clone());
    let r = cluster.resource_name();

    // Create: two cores and a replicant on their own network.
    let spec = ClusterSpec::builder(&images.v1)
        .replicas(2, 1)
        .resources(Resources::new(500, 256))
        .api_key(ApiKey::new("ecp", SecretString::from("docker-secret-123")).unwrap())
        .config("log.console.level = warning")
        .build()
        .unwrap();
    let t = Instant::now();
    driver.create(&cluster, &spec).await.unwrap();
    let created = t.elapsed();
    // Creating again converges (nothing duplicated, the cookie kept).
    let cookie = inspect(&format!("{r}-core-0"), "{{range .Config.Env}}{{println .}}{{end}}");
    driver.create(&cluster, &spec).await.unwrap();
    assert_eq!(containers(&cluster), vec![format!("{r}-core-0"), format!("{r}-core-1"), format!("{r}-replicant-0")]);
    let state = driver.state(&cluster).await.unwrap();
    assert_eq!(state.status, ClusterStatus::Running);
    assert_eq!((state.core.desired, state.core.ready, state.replicant.desired, state.replicant.ready), (2, 2, 1, 1));

    let env = inspect(&format!("{r}-replicant-0"), "{{range .Config.Env}}{{println .}}{{end}}");
    for want in [
        format!("EMQX_NODE__NAME=emqx@{r}-replicant-0"),
        "EMQX_NODE__ROLE=replicant".to_owned(),
        format!("EMQX_CLUSTER__STATIC__SEEDS=[\"emqx@{r}-core-0\",\"emqx@{r}-core-1\"]"),
        "EMQX_LISTENERS__SSL__DEFAULT__BIND=0.0.0.0:8883".to_owned(),
    ] {
        assert!(env.lines().any(|l| l == want), "{want} not in {env}");
    }
    let cookie_line = |env: &str| env.lines().find(|l| l.starts_with("EMQX_NODE__COOKIE=")).map(str::to_owned);
    assert_eq!(cookie_line(&env), cookie_line(&cookie), "one cookie per cluster");
    assert!(!env.contains("docker-secret-123"), "the API secret is a file, not an environment variable");
    assert_eq!(inspect(&format!("{r}-core-1"), "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}"), "500000000 268435456");
    let networks = inspect(&format!("{r}-core-0"), "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}");
    assert_eq!(networks, r);
    // The bootstrap files are in every node.
    let out = run(docker().args(["cp", &format!("{r}-replicant-0:/opt/emqx/etc/ecp_api_keys"), "-"]), Duration::from_secs(30)).unwrap();
    assert!(out.stdout.contains("ecp:docker-secret-123:administrator"), "{}", out.stderr);

    // Scale out the cores and drop the replicant: new nodes are clones of the others.
    driver.scale(&cluster, 3, 0).await.unwrap();
    assert_eq!(containers(&cluster), vec![format!("{r}-core-0"), format!("{r}-core-1"), format!("{r}-core-2")]);
    let out = run(docker().args(["cp", &format!("{r}-core-2:/opt/emqx/etc/base.hocon"), "-"]), Duration::from_secs(30)).unwrap();
    assert!(out.stdout.contains("log.console.level = warning"));
    assert_eq!(inspect(&format!("{r}-core-2"), "{{.HostConfig.NanoCpus}}"), "500000000");

    // Resize live.
    driver.resize(&cluster, Resources::new(1000, 512)).await.unwrap();
    assert_eq!(inspect(&format!("{r}-core-0"), "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}"), "1000000000 536870912");

    // NodePort: every listener and the dashboard published on the host; back to ClusterIP.
    let listeners = vec![Listener::default_for(ListenerProtocol::Tcp)];
    driver.set_network(&cluster, NetworkMode::NodePort, &listeners).await.unwrap();
    let ports = run(docker().args(["port", &format!("{r}-core-0")]), Duration::from_secs(30)).unwrap().stdout;
    assert!(ports.contains("1883/tcp") && ports.contains("18083/tcp") && !ports.contains("8883/tcp"), "{ports}");
    assert!(driver.set_network(&cluster, NetworkMode::LoadBalancer, &listeners).await.unwrap_err().is_unsupported());
    driver.set_network(&cluster, NetworkMode::ClusterIP, &listeners).await.unwrap();
    assert!(run(docker().args(["port", &format!("{r}-core-0")]), Duration::from_secs(30)).unwrap().stdout.trim().is_empty());

    // Upgrade, rolling; then a failing image is rolled back node by node.
    let t = Instant::now();
    driver.set_image(&cluster, &images.v2).await.unwrap();
    let upgraded = t.elapsed();
    for n in containers(&cluster) {
        assert_eq!(inspect(&n, "{{.Config.Image}}"), images.v2);
    }
    assert_eq!(driver.state(&cluster).await.unwrap().status, ClusterStatus::Running);
    let t = Instant::now();
    let err = driver.set_image(&cluster, &images.bad_exit).await.unwrap_err();
    let rolled_back = t.elapsed();
    assert!(err.to_string().contains("rolling update"), "{err}");
    for n in containers(&cluster) {
        assert_eq!(inspect(&n, "{{.Config.Image}}"), images.v2, "{n} was not rolled back");
    }
    assert_eq!(driver.state(&cluster).await.unwrap().status, ClusterStatus::Running);

    // Stop and start.
    driver.stop(&cluster).await.unwrap();
    assert_eq!(driver.state(&cluster).await.unwrap().status, ClusterStatus::Stopped);
    driver.start(&cluster).await.unwrap();
    assert_eq!(driver.state(&cluster).await.unwrap().status, ClusterStatus::Running);

    // Delete: nodes and network gone; deleting again is fine; the state is NotFound.
    driver.delete(&cluster).await.unwrap();
    assert!(containers(&cluster).is_empty());
    assert!(!run(docker().args(["network", "inspect", &r]), Duration::from_secs(30)).unwrap().success);
    driver.delete(&cluster).await.unwrap();
    assert!(driver.state(&cluster).await.unwrap_err().is_not_found());
    eprintln!(
        "docker cluster: create 3 nodes {created:?}, rolling upgrade of 3 nodes {upgraded:?}, failed upgrade rolled back {rolled_back:?}"
    );
}

#[tokio::test]
async fn an_unreachable_engine_is_a_typed_error() {
    let config = DockerClusterConfig::builder(DockerAddress::Tcp("tcp://127.0.0.1:9".into()))
        .request_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let driver = DockerClusterDriver::new(config).unwrap();
    let cluster = ClusterRef::new(ecp_core::ClusterId::new(), ecp_core::ProjectId::new(), "x");
    let err = driver.state(&cluster).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
}
