//! A real headless Chromium for the storefront tests, driven over W3C WebDriver.
//!
//! [`ChromeDriver`] starts Debian's `chromedriver` on a port found free at run time, waits until
//! its `/status` says it is ready, and kills its whole process group (the driver and every
//! browser it started) when dropped. [`Browser`] is one browser session. The client speaks the
//! few WebDriver commands the tests need as JSON over the `reqwest` client the tests already use:
//! a WebDriver crate would pull in proc-macro features that force RocksDB's C++ to rebuild.
//!
//! Chromium missing is a failure, not a skip: `deploy/test.sh` installs it.

use std::future::Future;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long a page may take to reach the state a test waits for.
pub const PAGE_WAIT: Duration = Duration::from_secs(20);
/// How often a waiting test looks at the page again.
const POLL: Duration = Duration::from_millis(25);
/// How long chromedriver may take to answer its status as ready.
const DRIVER_READY: Duration = Duration::from_secs(30);
/// The key under which WebDriver returns an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

fn program(env: &str, default: &str) -> PathBuf {
    let path = PathBuf::from(std::env::var(env).unwrap_or_else(|_| default.into()));
    assert!(
        path.is_file(),
        "{} not found: the storefront tests need Chromium and its WebDriver \
         (`apt-get install chromium chromium-driver`, or run ./deploy/test.sh); \
         set {env} to use another path",
        path.display()
    );
    path
}

/// A running chromedriver, killed with its browsers when dropped.
pub struct ChromeDriver {
    child: Child,
    url: String,
    chromium: PathBuf,
    http: reqwest::Client,
}

impl ChromeDriver {
    pub async fn start() -> ChromeDriver {
        let chromium = program("CHROMIUM", "/usr/bin/chromium");
        let driver = program("CHROMEDRIVER", "/usr/bin/chromedriver");
        let port = flashstock_deploy::local::free_port(Ipv4Addr::LOCALHOST).expect("a free port");
        // A process group of its own, so that dropping it ends the browsers it started too.
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let mut driver = ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            chromium,
            http: reqwest::Client::new(),
        };
        driver.wait_ready().await;
        driver
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + DRIVER_READY;
        loop {
            let status = self.http.get(format!("{}/status", self.url)).send().await;
            if let Ok(response) = status {
                let body: Value = response.json().await.unwrap_or_default();
                if body["value"]["ready"] == json!(true) {
                    return;
                }
            }
            if let Some(exit) = self.child.try_wait().expect("chromedriver's state") {
                panic!("chromedriver exited with {exit} before it was ready");
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver not ready within {DRIVER_READY:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// A new browser session: headless, its own profile, a desktop-sized window.
    pub async fn browser(&self) -> Browser {
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": self.chromium,
                    "args": [
                        "--headless=new",
                        // Tests run as root in CI, where Chromium's sandbox cannot start.
                        "--no-sandbox",
                        "--disable-dev-shm-usage",
                        "--disable-gpu",
                        "--window-size=1280,1000",
                    ],
                },
            }},
        });
        let answer = command(
            &self.http,
            reqwest::Method::POST,
            &format!("{}/session", self.url),
            Some(capabilities),
        )
        .await
        .expect("a browser session starts");
        let id = answer["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        Browser {
            http: self.http.clone(),
            session: format!("{}/session/{id}", self.url),
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The group id is the driver's pid: it leads the group it was started in. A group that
        // is gone is only an error.
        let _ = flashstock_host::signal_group(self.child.id(), flashstock_host::Signal::Kill);
        let _ = self.child.wait();
    }
}

/// Send one WebDriver command; its `value` on success, else what went wrong.
async fn command(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let mut request = http.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
    let ok = response.status().is_success();
    let mut body: Value = response.json().await.map_err(|e| format!("{url}: {e}"))?;
    if ok {
        Ok(body["value"].take())
    } else {
        Err(format!("{url}: {}", body["value"]))
    }
}

/// One browser session.
pub struct Browser {
    http: reqwest::Client,
    session: String,
}

impl Browser {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        command(&self.http, method, &format!("{}{path}", self.session), body).await
    }

    /// Load a page and wait until it has loaded.
    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    pub async fn set_window_size(&self, width: u32, height: u32) {
        let rect = json!({ "width": width, "height": height });
        self.call(reqwest::Method::POST, "/window/rect", Some(rect))
            .await
            .expect("resize the window");
    }

    /// Run a script in the page; its return value.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        let body = json!({ "script": script, "args": args });
        self.call(reqwest::Method::POST, "/execute/sync", Some(body))
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}"))
    }

    /// The text a reader sees in the first element matching `css`, if there is one.
    pub async fn text(&self, css: &str) -> Option<String> {
        let script = "const e = document.querySelector(arguments[0]); return e && e.innerText;";
        self.execute(script, vec![json!(css)])
            .await
            .as_str()
            .map(str::to_owned)
    }

    /// An attribute of the first element matching `css`, if both exist.
    pub async fn attribute(&self, css: &str, name: &str) -> Option<String> {
        let script = "const e = document.querySelector(arguments[0]); \
                      return e && e.getAttribute(arguments[1]);";
        self.execute(script, vec![json!(css), json!(name)])
            .await
            .as_str()
            .map(str::to_owned)
    }

    async fn element(&self, css: &str) -> String {
        let query = json!({ "using": "css selector", "value": css });
        let found = self
            .call(reqwest::Method::POST, "/element", Some(query))
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"));
        found[ELEMENT_KEY]
            .as_str()
            .expect("an element reference")
            .to_owned()
    }

    /// Click the first element matching `css`, as a user would.
    pub async fn click(&self, css: &str) {
        let element = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Replace the value of the input matching `css` by typing `text`.
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/clear"),
            Some(json!({})),
        )
        .await
        .unwrap_or_else(|e| panic!("clear {css}: {e}"));
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await
        .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// Poll the page until `check` finds what it waits for, up to [`PAGE_WAIT`]; `what` says
    /// what in the failure, with the page's main text.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            if let Some(found) = check().await {
                return found;
            }
            if Instant::now() > deadline {
                let main = self.text("main").await.unwrap_or_default();
                panic!("waited {PAGE_WAIT:?} for {what}; the page shows:\n{main}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Wait until the text of `css` satisfies `accept`; that text.
    pub async fn wait_text(&self, css: &str, accept: impl Fn(&str) -> bool) -> String {
        self.wait_for(&format!("the text of {css}"), || async {
            self.text(css).await.filter(|text| accept(text))
        })
        .await
    }

    /// Save a PNG of the window to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let encoded = self
            .call(reqwest::Method::GET, "/screenshot", None)
            .await
            .expect("a screenshot");
        let png = decode_base64(encoded.as_str().expect("base64 text"));
        std::fs::create_dir_all(path.parent().expect("a directory")).expect("screenshot dir");
        std::fs::write(path, png).expect("write the screenshot");
    }

    /// End the session and close its browser.
    pub async fn close(self) {
        let _ = self.call(reqwest::Method::DELETE, "", None).await;
    }
}

/// Standard base64 (with padding), as WebDriver sends screenshots.
fn decode_base64(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("a screenshot in standard base64")
}

#[test]
fn base64_decodes_screenshots() {
    assert_eq!(decode_base64("aGVsbG8="), b"hello");
    assert_eq!(decode_base64("aGk="), b"hi");
    assert_eq!(decode_base64("YWJj"), b"abc");
}
