//! A small SMTP server for tests: it speaks enough of RFC 5321 (EHLO, AUTH PLAIN, MAIL,
//! RCPT, DATA, RSET, NOOP, QUIT) for lettre, without TLS, and keeps every message it accepts.
//! `stop` closes the port, so clients get "connection refused" until `restart`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// One accepted message.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub from: String,
    pub recipients: Vec<String>,
    /// The message as sent, headers and body, dot-stuffing removed.
    pub data: String,
    /// `username` from AUTH PLAIN, if the client authenticated.
    pub username: Option<String>,
    pub password: Option<String>,
}

impl ReceivedMail {
    /// Returns the value of the first header with this name, unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    }

    /// Returns the message with quoted-printable soft breaks and escapes decoded, enough to
    /// find links.
    pub fn decoded_body(&self) -> String {
        decode_quoted_printable(&self.data)
    }
}

/// Decodes quoted-printable text (RFC 2045 §6.7): `=\r\n` joins lines and `=XX` is a byte.
pub fn decode_quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut output = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'='
            && index + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&joined[index + 1..index + 3], 16)
        {
            output.push(byte);
            index += 3;
            continue;
        }
        output.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&output).into_owned()
}

pub struct SmtpServer {
    pub address: SocketAddr,
    mails: Arc<Mutex<Vec<ReceivedMail>>>,
    received: Arc<Notify>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl SmtpServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Self {
            address: listener.local_addr().unwrap(),
            mails: Arc::default(),
            received: Arc::default(),
            task: Mutex::new(None),
        };
        server.serve(listener);
        server
    }

    fn serve(&self, listener: TcpListener) {
        let mails = self.mails.clone();
        let received = self.received.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(session(stream, mails.clone(), received.clone()));
            }
        });
        *self.task.lock().unwrap() = Some(task);
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Closes the listening socket; new connections are refused.
    pub async fn stop(&self) {
        if let Some(task) = self.task.lock().unwrap().take() {
            task.abort();
        }
        // Let the runtime drop the aborted task and its listener.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    /// Listens again on the same port.
    pub async fn restart(&self) {
        let listener = TcpListener::bind(self.address).await.unwrap();
        self.serve(listener);
    }

    pub fn mails(&self) -> Vec<ReceivedMail> {
        self.mails.lock().unwrap().clone()
    }

    /// Waits until at least `count` messages arrived; panics after 10 seconds.
    pub async fn wait_for(&self, count: usize) -> Vec<ReceivedMail> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.received.notified();
            let mails = self.mails();
            if mails.len() >= count {
                return mails;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("expected {count} messages, received {}", self.mails().len());
            }
        }
    }
}

async fn session(stream: TcpStream, mails: Arc<Mutex<Vec<ReceivedMail>>>, received: Arc<Notify>) {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut from = String::new();
    let mut recipients = Vec::new();
    let mut credentials: (Option<String>, Option<String>) = (None, None);
    if writer
        .write_all(b"220 localhost ESMTP test\r\n")
        .await
        .is_err()
    {
        return;
    }
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = line.trim_end().to_string();
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-localhost\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n",
            "HELO" | "NOOP" => b"250 OK\r\n",
            "AUTH" => {
                let encoded = command.split_whitespace().nth(2).unwrap_or_default();
                let decoded = STANDARD.decode(encoded).unwrap_or_default();
                let parts: Vec<String> = decoded
                    .split(|byte| *byte == 0)
                    .map(|part| String::from_utf8_lossy(part).into_owned())
                    .collect();
                credentials = (parts.get(1).cloned(), parts.get(2).cloned());
                b"235 2.7.0 Authentication successful\r\n"
            }
            "MAIL" => {
                from = angle_address(&command);
                recipients.clear();
                b"250 OK\r\n"
            }
            "RCPT" => {
                recipients.push(angle_address(&command));
                b"250 OK\r\n"
            }
            "RSET" => {
                from.clear();
                recipients.clear();
                b"250 OK\r\n"
            }
            "DATA" => {
                if writer
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                let Some(data) = read_data(&mut reader).await else {
                    return;
                };
                mails.lock().unwrap().push(ReceivedMail {
                    from: from.clone(),
                    recipients: recipients.clone(),
                    data,
                    username: credentials.0.clone(),
                    password: credentials.1.clone(),
                });
                received.notify_waiters();
                b"250 OK queued\r\n"
            }
            "QUIT" => {
                let _ = writer.write_all(b"221 Bye\r\n").await;
                return;
            }
            _ => b"502 Command not implemented\r\n",
        };
        if writer.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// Reads DATA lines up to the lone `.` and undoes dot-stuffing (RFC 5321 §4.5.2).
async fn read_data(reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<String> {
    let mut data = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        if line == ".\r\n" || line == ".\n" {
            return Some(data);
        }
        data.push_str(line.strip_prefix('.').unwrap_or(&line));
    }
}

fn angle_address(command: &str) -> String {
    command
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(address, _)| address.to_string())
        .unwrap_or_default()
}
