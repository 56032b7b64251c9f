//! Microsoft Entra ID for the Kafka endpoint, as a user runs it: librdkafka, started with SASL
//! OAUTHBEARER, asks the simulator for a token, which fetches it from the configured
//! credential (here a client secret, from a loopback stand-in of Entra's token endpoint); the
//! secret and the token appear nowhere in the output; settings at fault exit 2 naming them.
//! No broker here speaks OAUTHBEARER (tansu's SASL takes PLAIN and SCRAM), so the handshake
//! itself is left to a real namespace.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{simulator, stderr};

const SECRET: &str = "entra-client-secret-never-shown";
const TOKEN: &str = "eyJhbGciOiJub25lIn0.eyJhdWQiOiJ0ZXN0In0.issued-by-the-stand-in";

/// A loopback stand-in of Entra's token endpoint: answers every POST with a token, and sends
/// each request (request line, body) down the channel.
fn token_endpoint() -> (String, mpsc::Receiver<(String, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (sent, received) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut length = 0;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                if let Some(value) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let answer =
                format!(r#"{{"token_type":"Bearer","expires_in":3599,"access_token":"{TOKEN}"}}"#);
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
            let _ = sent.send((
                line.trim_end().to_owned(),
                String::from_utf8_lossy(&body).into_owned(),
            ));
        }
    });
    (url, received)
}

/// The binary with an Entra client-secret credential for `namespace`, nothing of Azure's
/// environment inherited.
fn entra_run(authority: &str) -> Command {
    let mut command = simulator();
    for (name, _) in std::env::vars() {
        if name.starts_with("AZURE_") {
            command.env_remove(name);
        }
    }
    command
        .env("SIMULATOR__KAFKA__AUTH", "entra")
        // A namespace whose Kafka endpoint (127.0.0.1:9093) nothing answers.
        .env("SIMULATOR__KAFKA__NAMESPACE", "127.0.0.1")
        .env("SIMULATOR__KAFKA__ENTRA_CREDENTIAL", "client_secret")
        .env("SIMULATOR__KAFKA__ENTRA_CLIENT_SECRET", SECRET)
        .env("AZURE_CLIENT_ID", "00000000-0000-4000-8000-00000000c11e")
        .env("AZURE_TENANT_ID", "00000000-0000-4000-8000-0000000007e7")
        .env("AZURE_AUTHORITY_HOST", authority)
        .args(["--sink", "kafka"]);
    command
}

#[test]
fn librdkafka_gets_its_token_from_the_configured_credential_and_nothing_secret_is_shown() {
    let (authority, requests) = token_endpoint();
    let child = entra_run(&authority)
        .env("RUST_LOG", "simulator=debug,librdkafka=debug")
        .args(["--rate", "10/s", "--shoppers", "5", "--speed", "max"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let request = requests.recv_timeout(Duration::from_secs(30));
    // Stop it, token or not: SIGTERM, as an operator would.
    terminate(child.id());
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        stderr(&output)
    );
    let (line, body) = request.unwrap_or_else(|_| panic!("librdkafka asked for no token:\n{text}"));
    assert_eq!(
        line,
        "POST /00000000-0000-4000-8000-0000000007e7/oauth2/v2.0/token HTTP/1.1"
    );
    for field in [
        "grant_type=client_credentials",
        "client_id=00000000-0000-4000-8000-00000000c11e",
        "scope=https%3A%2F%2F127.0.0.1%2F.default",
        &format!("client_secret={SECRET}"),
    ] {
        assert!(body.split('&').any(|f| f == field), "{field} not in {body}");
    }
    assert!(
        text.contains("Microsoft Entra ID token obtained for the Kafka endpoint"),
        "{text}"
    );
    assert!(!text.contains(SECRET), "the secret was shown:\n{text}");
    assert!(!text.contains(TOKEN), "the token was shown:\n{text}");
}

fn terminate(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn entra_settings_print_redacted_and_faults_are_named() {
    let printed = entra_run("https://login.example")
        .arg("--print-config")
        .output()
        .unwrap();
    common::assert_success(&printed);
    let text = String::from_utf8_lossy(&printed.stdout);
    assert!(text.contains(r#"auth = "entra""#), "{text}");
    assert!(text.contains(r#"namespace = "127.0.0.1""#), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("entra_client_secret") && l.contains("set (redacted)")),
        "{text}"
    );
    assert!(!text.contains(SECRET));

    let missing = entra_run("https://login.example")
        .env_remove("SIMULATOR__KAFKA__NAMESPACE")
        .env_remove("AZURE_TENANT_ID")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
    let message = stderr(&missing);
    assert!(message.contains("kafka.namespace: missing"), "{message}");
    assert!(!message.contains(SECRET));

    let no_tenant = entra_run("https://login.example")
        .env_remove("AZURE_TENANT_ID")
        .output()
        .unwrap();
    assert_eq!(no_tenant.status.code(), Some(2));
    assert!(
        stderr(&no_tenant).contains("kafka.entra_tenant_id: missing"),
        "{}",
        stderr(&no_tenant)
    );
}
