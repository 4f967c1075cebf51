//! ecp-hosting's public API: connecting to engines that are not there, and API servers from
//! kubeconfig files, without a Docker engine or a Kubernetes cluster.

use std::time::Duration;

use ecp_hosting::docker::{DockerAddress, DockerClient, connect};
use ecp_hosting::kubernetes::KubeConnection;
use ecp_hosting::{Backend, Error};

#[tokio::test]
async fn an_engine_that_does_not_answer_is_a_retryable_error() {
    // A closed port: the client is made, the version negotiation cannot reach the engine.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let e = connect(&DockerAddress::tcp(format!("tcp://127.0.0.1:{port}")), Duration::from_secs(2)).await.unwrap_err();
    assert_eq!((e.backend(), e.operation(), e.status(), e.is_retryable()), (Backend::Docker, "negotiate the API version", None, true));
    assert_eq!(e.to_string(), "docker: negotiate the API version failed");
}

#[tokio::test]
async fn certificate_files_that_are_not_there_are_not_retryable() {
    let address = DockerAddress::tls("tcp://127.0.0.1:1", "/nonexistent/ca.pem", "/nonexistent/cert.pem", "/nonexistent/key.pem");
    let client = DockerClient::new(address.clone(), Duration::from_secs(2));
    let e: Error = client.get().await.unwrap_err();
    assert_eq!((e.operation(), e.is_retryable(), e.is_not_found()), ("connect", false, false));
    assert!(std::error::Error::source(&e).is_some());
    // Not cached: the next use tries again.
    assert_eq!(client.get().await.unwrap_err().operation(), "connect");
    assert_eq!(client.address(), &address);
}

const KUBECONFIG: &str = r#"apiVersion: v1
kind: Config
current-context: plant-1
clusters:
- name: plant-1
  cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}
- name: plant-2
  cluster: {server: "https://127.0.0.1:7443", insecure-skip-tls-verify: true}
contexts:
- name: plant-1
  context: {cluster: plant-1, user: ecp, namespace: emqx}
- name: plant-2
  context: {cluster: plant-2, user: ecp}
users:
- name: ecp
  user: {token: kube-token-sentinel}
"#;

#[tokio::test]
async fn clients_come_from_kubeconfig_files_and_their_contexts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    std::fs::write(&path, KUBECONFIG).unwrap();
    let client = KubeConnection::kubeconfig(&path, None).client().await.unwrap();
    assert_eq!(client.default_namespace(), "emqx");
    let client = KubeConnection::kubeconfig(&path, Some("plant-2")).client().await.unwrap();
    assert_eq!(client.default_namespace(), "default");
    let c = KubeConnection::kubeconfig(&path, Some("plant-2"));
    assert!(!format!("{c:?}").contains("sentinel"));

    let Err(e) = KubeConnection::kubeconfig(&path, Some("plant-9")).client().await else { panic!("an unknown context") };
    assert_eq!((e.backend(), e.operation(), e.is_retryable()), (Backend::Kubernetes, "connect", false));
    let Err(e) = KubeConnection::kubeconfig(dir.path().join("missing"), None).client().await else { panic!("a missing file") };
    assert_eq!(e.to_string(), "kubernetes: connect failed");

    // The host's own client is handed back as it is.
    let host = KubeConnection::kubeconfig(&path, None).client().await.unwrap();
    let again = KubeConnection::from_client(host).client().await.unwrap();
    assert_eq!(again.default_namespace(), "emqx");
    assert_eq!(format!("{:?}", KubeConnection::default()), "Infer");
}
