//! The mosquitto harness: start, kill, restart on the same port, reload. Real broker, real TCP;
//! every wait is bounded.

use std::time::Duration;

use ecp_testkit::mosquitto::Mosquitto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

/// Sends an MQTT 3.1.1 CONNECT (with a username and password, if given) and returns the CONNACK's
/// return code (0 accepted, 4 bad username or password, 5 not authorised).
async fn connect_code(broker: &Mosquitto, login: Option<(&str, &str)>) -> u8 {
    let mut tcp = timeout(WAIT, TcpStream::connect((broker.host(), broker.port()))).await.expect("connect in time").expect("connect");
    let field = |s: &str| [&(s.len() as u16).to_be_bytes()[..], s.as_bytes()].concat();
    // protocol name "MQTT", level 4, flags (clean session, username, password), keep alive 60
    let flags = if login.is_some() { 0xC2 } else { 0x02 };
    let mut body = [field("MQTT"), vec![4, flags, 0, 60], field("t")].concat();
    if let Some((user, password)) = login {
        body.extend(field(user));
        body.extend(field(password));
    }
    let len = u8::try_from(body.len()).expect("short CONNECT");
    tcp.write_all(&[&[0x10, len][..], &body].concat()).await.expect("send CONNECT");
    let mut connack = [0u8; 4];
    timeout(WAIT, tcp.read_exact(&mut connack)).await.expect("CONNACK in time").expect("read CONNACK");
    assert_eq!(connack[..2], [0x20, 2], "not a CONNACK: {connack:?}");
    connack[3]
}

async fn refused(broker: &Mosquitto) -> bool {
    matches!(TcpStream::connect((broker.host(), broker.port())).await, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
}

#[tokio::test]
async fn starts_kills_and_restarts_on_the_same_port() {
    let mut broker = Mosquitto::builder().start().await.expect("start mosquitto");
    assert_eq!(broker.host(), "127.0.0.1");
    let port = broker.port();
    let first = broker.pid().expect("running");
    assert_eq!(connect_code(&broker, None).await, 0, "anonymous clients are allowed by default");

    broker.kill();
    assert_eq!(broker.pid(), None);
    assert!(refused(&broker).await, "a killed broker refuses connections");

    broker.restart().await.expect("restart");
    assert_eq!(broker.port(), port);
    assert_ne!(broker.pid(), Some(first));
    assert_eq!(connect_code(&broker, None).await, 0);
    // restart also works on a running broker
    broker.restart().await.expect("restart a running broker");
    assert_eq!(connect_code(&broker, None).await, 0);
    assert!(broker.log().contains("Opening ipv4 listen socket on port"));
}

#[tokio::test]
async fn reload_rereads_the_password_file() {
    let mut broker = Mosquitto::builder().allow_anonymous(false).start().await.expect("start mosquitto");
    let alice = Some(("alice", "secret1"));
    assert_eq!(connect_code(&broker, None).await, 5, "anonymous clients are refused (not authorised)");
    assert_eq!(connect_code(&broker, alice).await, 5, "no password file: nobody gets in");

    // mosquitto_passwd's output for alice/secret1
    broker
        .write_password_file(
            "alice:$7$101$3fuxp6SznrPkRg1T$nNcassnpWitElADG4NcllKKfS5S18fKJGZW7VBne/6rNfc8svdxVf1V3pb8Lj+eZhyZAuwYFl39lLphm7jZMIw==\n",
        )
        .expect("write the password file");
    broker.write_acl_file("user alice\ntopic readwrite a/#\n").expect("write the ACL file");
    broker.reload().await.expect("reload");
    assert_eq!(connect_code(&broker, alice).await, 0, "alice is in the reloaded password file");
    assert_eq!(connect_code(&broker, Some(("alice", "secret2"))).await, 5, "a wrong password");
    assert_eq!(connect_code(&broker, None).await, 5);
    let conf = std::fs::read_to_string(broker.dir().join("mosquitto.conf")).expect("config");
    assert!(conf.contains("password_file ") && conf.contains("acl_file "), "{conf}");
    assert!(broker.log().contains("Reloading config."));
}

#[tokio::test]
async fn dropping_the_handle_kills_the_broker() {
    let broker = Mosquitto::builder().start().await.expect("start mosquitto");
    let (host, port) = (broker.host(), broker.port());
    drop(broker);
    assert!(matches!(TcpStream::connect((host, port)).await, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused));
}
