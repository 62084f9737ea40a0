//! `airlock console` over HTTP: a real server on a free loopback port, over a data dir whose
//! quarantine the real pipeline filled (its scanner down, so a clean upload lands as
//! `scan-unavailable`, and two mismatched ones as `type-mismatch`), and a real clamd for
//! releases and rescans. Sign-in with tokens and roles, sessions, filters, escaping of
//! hostile upload values and bytes, the CSRF and Host guards, reasons required, what only
//! admins may do, rescan, export as an encrypted zip, forced release, purge's tombstone and
//! the audit entries under the signed-in names.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use airlock_embedded::cases::{self, Case, Prepared};
use airlock_embedded::console::{
    self, AccessArgs, CONTENT_SECURITY_POLICY, ConsoleArgs, ConsoleHandle,
};
use airlock_embedded::review_cli::{ReviewDataArgs, ScannerArgs};
use airlock_embedded::{EmbeddedPipeline, PipelineConfig, Settlement};
use reqwest::StatusCode;
use serde_json::{Value, json};

const HOSTILE_NAME: &str = "<img src=x onerror=alert(1)>.png";
const HOSTILE_UPLOADER: &str = "\"><script>alert(2)</script>";
const HOSTILE_BYTES: &[u8] = b"<script>alert(3)</script> and then some text\n";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Three uploads, quarantined by the pipeline while nothing answers on the scanner's port.
struct Seeded {
    /// acme/avatar, JPEG bytes declared PNG, hostile filename and uploader: `type-mismatch`.
    mismatch: String,
    /// globex/document, "text" starting with a script tag: `type-mismatch` (it is HTML).
    script_text: String,
    /// acme/document, plain text: `scan-unavailable`.
    plain_text: String,
}

async fn seed(data_dir: &Path, scratch: &Path) -> Seeded {
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = down.local_addr().unwrap().to_string();
    drop(down);
    let scanner =
        airlock_clamd::ClamdScanner::new(airlock_clamd::ClamdConfig::new(address.parse().unwrap()));
    let mut config = PipelineConfig::new(
        data_dir,
        "airlock-uploads",
        Arc::new(scanner),
        Arc::new(airlock_media::ImageProcessor),
    );
    config.delay_scale = 0.0001;
    let pipeline = EmbeddedPipeline::start(config).unwrap();
    let script_file = scratch.join("script.txt");
    std::fs::write(&script_file, HOSTILE_BYTES).unwrap();
    let plain_file = scratch.join("plain.txt");
    std::fs::write(&plain_file, b"quarterly figures\n").unwrap();
    let disguised = repo().join("fixtures/objects/disguised-as-png.png");
    let uploads = [
        json!({
            "id": "01937a3b-4b40-7128-801a-1a2b3c4e9001", "tenant": "acme", "purpose": "avatar",
            "declaredType": "image/png", "filename": HOSTILE_NAME, "uploader": HOSTILE_UPLOADER,
            "file": disguised,
        }),
        json!({
            "id": "01937a3b-4b40-7128-801a-1a2b3c4e9002", "tenant": "globex",
            "purpose": "document", "declaredType": "text/plain; charset=utf-8",
            "filename": "notes.txt", "uploader": "user-2", "file": script_file,
        }),
        json!({
            "id": "01937a3b-4b40-7128-801a-1a2b3c4e9003", "tenant": "acme",
            "purpose": "document", "declaredType": "text/plain; charset=utf-8",
            "filename": "report.txt", "uploader": "user-3", "file": plain_file,
        }),
    ];
    let mut keys = Vec::new();
    for mut upload in uploads {
        let file = upload.as_object_mut().unwrap().remove("file").unwrap();
        let case = json!({
            "description": "an upload for the console",
            "intent": upload,
            "object": { "path": file },
        });
        let case = Case::from_value(&scratch.join("case.json"), case).unwrap();
        let Prepared::Ready(items) = cases::prepare(
            &case,
            pipeline.store().as_ref(),
            pipeline.intents().as_ref(),
            &pipeline.config().policies,
            "airlock-uploads",
        )
        .await
        .unwrap() else {
            panic!("the case was not prepared");
        };
        let run = pipeline.process(items[0].object().unwrap()).await.unwrap();
        match run.settlement {
            Settlement::Quarantine { key, reason, .. } => keys.push((key, reason.code())),
            other => panic!("not quarantined: {other:?}"),
        }
    }
    pipeline.shutdown().await;
    assert_eq!(keys[0].1, "type-mismatch");
    // Sniffed as HTML, not the text it was declared as.
    assert_eq!(keys[1].1, "type-mismatch");
    assert_eq!(keys[2].1, "scan-unavailable");
    Seeded {
        mismatch: keys[0].0.clone(),
        script_text: keys[1].0.clone(),
        plain_text: keys[2].0.clone(),
    }
}

const TOKENS: &str =
    "# the review team\nadmin alice alice-admin-token-0001\nreviewer bob bob-reviewer-token-0002\n";
const ALICE: &str = "alice-admin-token-0001";
const BOB: &str = "bob-reviewer-token-0002";

fn scanner_args() -> ScannerArgs {
    ScannerArgs {
        clamd: None,
        signatures: repo().join("fixtures/clamav"),
        policies: None,
        max_definitions_age_hours: airlock_core::definitions::MaxAge(Some(
            airlock_core::definitions::DEFAULT_MAX_AGE,
        )),
    }
}

async fn start(data_dir: &Path, tokens: Option<&str>) -> ConsoleHandle {
    console::start(&ConsoleArgs {
        data: ReviewDataArgs {
            data_dir: data_dir.to_owned(),
            bucket: "airlock-uploads".into(),
        },
        listen: "127.0.0.1:0".parse().unwrap(),
        access: AccessArgs {
            tokens_file: None,
            tokens: tokens.map(str::to_owned),
            session_hours: 1,
        },
        scanner: scanner_args(),
    })
    .await
    .unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A response's status, `Location`, `Set-Cookie` and body.
struct Reply {
    status: StatusCode,
    location: Option<String>,
    cookie: Option<String>,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn reply(response: reqwest::Response) -> Reply {
    let headers = response.headers().clone();
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    Reply {
        status: response.status(),
        location: header("location"),
        cookie: header("set-cookie"),
        body: response.bytes().await.unwrap().to_vec(),
        headers,
    }
}

/// A GET with the session cookie `session` (`name=value`), if any; every page has the
/// console's security headers and no script.
async fn get(console: &ConsoleHandle, session: Option<&str>, path_and_query: &str) -> Reply {
    let mut request = client().get(format!("{}{path_and_query}", console.url()));
    if let Some(session) = session {
        request = request.header("cookie", session);
    }
    let reply = reply(request.send().await.unwrap()).await;
    assert_eq!(
        reply.headers["content-security-policy"], CONTENT_SECURITY_POLICY,
        "{path_and_query}"
    );
    assert_eq!(reply.headers["x-content-type-options"], "nosniff");
    assert!(
        !reply.text().contains("<script"),
        "{path_and_query}: {}",
        reply.text()
    );
    reply
}

/// A signed-in GET of a page that must answer 200.
async fn page(console: &ConsoleHandle, session: &str, path_and_query: &str) -> String {
    let reply = get(console, Some(session), path_and_query).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{path_and_query}: {}",
        reply.text()
    );
    reply.text()
}

fn encoded(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn item_path(key: &str) -> String {
    format!("/item?key={}", encoded(key))
}

/// How an item is linked from the list (relative links).
fn item_link(key: &str) -> String {
    format!("href=\"item?key={}\"", encoded(key))
}

/// The anti-CSRF token of a signed-in page's forms.
fn token_of(page: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).expect("a form with a token") + marker.len();
    page[start..start + 64].to_owned()
}

/// A form post with `session` (`name=value`) and `origin`, if given.
async fn post(
    console: &ConsoleHandle,
    session: Option<&str>,
    path: &str,
    origin: Option<&str>,
    fields: &[(&str, &str)],
) -> Reply {
    let body = fields
        .iter()
        .map(|(name, value)| format!("{name}={}", encoded(value)))
        .collect::<Vec<_>>()
        .join("&");
    let mut request = client()
        .post(format!("{}{path}", console.url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    if let Some(session) = session {
        request = request.header("cookie", session);
    }
    reply(request.send().await.unwrap()).await
}

/// Signs in with `token`: the session cookie as `name=value`.
async fn sign_in(console: &ConsoleHandle, token: &str) -> String {
    let reply = post(
        console,
        None,
        "/signin",
        Some(&console.url()),
        &[("token", token)],
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    assert_eq!(reply.location.as_deref(), Some("/"));
    let cookie = reply.cookie.expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/;", "Max-Age=3600"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let pair = cookie.split(';').next().unwrap().to_owned();
    assert!(
        pair.starts_with(&format!("airlock-console-{}=", console.addr().port())),
        "{pair}"
    );
    pair
}

fn rows(page: &str) -> usize {
    page.matches("<tr><td><a href=\"item?key=").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // Reason: two reviewers' sessions, in order.
async fn reviewers_sign_in_and_review_and_the_console_guards_its_actions_by_role() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let seeded = seed(&data, dir.path()).await;
    let bucket = data.join("buckets/airlock-uploads");
    let console = start(&data, Some(TOKENS)).await;
    assert!(console.generated_token.is_none());
    let own_origin = console.url();

    // Nothing without signing in; a wrong token, or a sign-in from another site, opens
    // nothing.
    for path in ["/", &item_path(&seeded.mismatch), "/audit"] {
        let reply = get(&console, None, path).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(reply.location.as_deref(), Some("/signin"));
        assert!(!reply.text().contains(&seeded.mismatch));
    }
    let signin = get(&console, None, "/signin").await;
    assert_eq!(signin.status, StatusCode::OK);
    assert!(signin.text().contains("type=\"password\" name=\"token\""));
    for (origin, token) in [
        (Some(own_origin.as_str()), "alice-admin-token-0002"),
        (Some(own_origin.as_str()), ""),
        (Some("http://attacker.example"), ALICE),
        (None, ALICE),
    ] {
        let reply = post(&console, None, "/signin", origin, &[("token", token)]).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{origin:?} {token}");
        assert!(reply.cookie.is_none());
    }
    let alice = sign_in(&console, ALICE).await;
    let bob = sign_in(&console, BOB).await;
    assert_ne!(alice, bob);
    let unknown = format!(
        "airlock-console-{}={}",
        console.addr().port(),
        "ab".repeat(32)
    );
    assert_eq!(
        get(&console, Some(&unknown), "/").await.status,
        StatusCode::SEE_OTHER
    );

    // The list: everything, escaped; counts by reason; who is signed in.
    let all = page(&console, &alice, "/").await;
    assert_eq!(rows(&all), 3, "{all}");
    assert!(all.contains("<strong>alice</strong> (admin)"), "{all}");
    assert!(
        all.contains("&lt;img src=x onerror=alert(1)&gt;.png"),
        "{all}"
    );
    assert!(!all.contains("<img"), "{all}");
    assert!(all.contains("<h2>3 matching</h2>"), "{all}");
    assert!(
        all.contains("<span class=\"code\">scan-unavailable</span> <span class=\"n\">1</span>"),
        "{all}"
    );
    assert!(
        all.contains("<span class=\"code\">type-mismatch</span> <span class=\"n\">2</span>"),
        "{all}"
    );

    // Filters.
    for (query, expected, absent) in [
        (
            "/?tenant=acme",
            vec![&seeded.mismatch, &seeded.plain_text],
            &seeded.script_text,
        ),
        (
            "/?purpose=document",
            vec![&seeded.script_text, &seeded.plain_text],
            &seeded.mismatch,
        ),
        (
            "/?reason=type-mismatch&status=quarantined",
            vec![&seeded.mismatch, &seeded.script_text],
            &seeded.plain_text,
        ),
        (
            "/?reason=scan-unavailable",
            vec![&seeded.plain_text],
            &seeded.script_text,
        ),
        (
            "/?tenant=acme&purpose=document&until=2999-01-01",
            vec![&seeded.plain_text],
            &seeded.mismatch,
        ),
    ] {
        let page = page(&console, &bob, query).await;
        assert_eq!(rows(&page), expected.len(), "{query}: {page}");
        for key in expected {
            assert!(page.contains(&item_link(key)), "{query}: {key} missing");
        }
        assert!(
            !page.contains(&item_link(absent)),
            "{query}: {absent} shown"
        );
    }
    for query in ["/?since=2999-01-01", "/?status=purged"] {
        let page = page(&console, &bob, query).await;
        assert_eq!(rows(&page), 0, "{query}");
        assert!(page.contains("No quarantined uploads match"), "{query}");
    }
    let bad = get(&console, Some(&bob), "/?reason=not-a-reason").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.text()
            .contains("reason: &quot;not-a-reason&quot; is not a reason code"),
        "{}",
        bad.text()
    );

    // The item page: hostile values as text, the bytes as an escaped hex dump; an admin
    // gets purge and force, a reviewer neither.
    let item = page(&console, &alice, &item_path(&seeded.mismatch)).await;
    assert!(
        item.contains("<h1>&lt;img src=x onerror=alert(1)&gt;.png</h1>"),
        "{item}"
    );
    assert!(
        item.contains("&quot;&gt;&lt;script&gt;alert(2)&lt;/script&gt;"),
        "{item}"
    );
    assert!(
        item.contains("Intent transitions") && item.contains("QUARANTINED"),
        "{item}"
    );
    assert!(item.contains("action=\"purge\"") && item.contains("name=\"force\""));
    let bob_item = page(&console, &bob, &item_path(&seeded.mismatch)).await;
    assert!(
        !bob_item.contains("action=\"purge\"") && !bob_item.contains("name=\"force\""),
        "{bob_item}"
    );
    assert!(bob_item.contains("need the admin role"), "{bob_item}");
    assert!(bob_item.contains("action=\"export\""), "{bob_item}");
    let script_item = page(&console, &alice, &item_path(&seeded.script_text)).await;
    assert!(
        script_item.contains("3c 73 63 72 69 70 74 3e") // `<script>` in hex
            && script_item.contains("|&lt;script&gt;alert(3)|"),
        "{script_item}"
    );
    // Only an item quarantined for an outage offers a rescan.
    assert!(!script_item.contains("action=\"rescan\""));
    let plain_item = page(&console, &bob, &item_path(&seeded.plain_text)).await;
    assert!(plain_item.contains("action=\"rescan\""), "{plain_item}");
    let alice_token = token_of(&item);
    assert_eq!(alice_token, token_of(&script_item), "one token per session");
    let bob_token = token_of(&bob_item);
    assert_ne!(alice_token, bob_token, "the token is the session's");
    let missing = get(
        &console,
        Some(&alice),
        &item_path("quarantine/acme/avatar/nope"),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // Another name for this address (DNS rebinding) gets nothing.
    let response = client()
        .get(format!("{}/", console.url()))
        .header(
            "host",
            format!("attacker.example:{}", console.addr().port()),
        )
        .header("cookie", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST);
    assert!(!response.text().await.unwrap().contains(&seeded.mismatch));

    // Actions without the session's token, with another session's, from another origin,
    // without an origin, without a session, or by GET: refused, nothing changes.
    let key = seeded.mismatch.as_str();
    let why = "purged after review";
    let zeros = "0".repeat(64);
    for (session, origin, fields) in [
        (
            Some(&alice),
            Some(own_origin.as_str()),
            vec![("key", key), ("why", why)],
        ),
        (
            Some(&alice),
            Some(own_origin.as_str()),
            vec![("key", key), ("why", why), ("csrf", zeros.as_str())],
        ),
        (
            Some(&alice),
            Some(own_origin.as_str()),
            vec![("key", key), ("why", why), ("csrf", bob_token.as_str())],
        ),
        (
            Some(&alice),
            Some("http://attacker.example"),
            vec![("key", key), ("why", why), ("csrf", alice_token.as_str())],
        ),
        (
            Some(&alice),
            None,
            vec![("key", key), ("why", why), ("csrf", alice_token.as_str())],
        ),
        (
            None,
            Some(own_origin.as_str()),
            vec![("key", key), ("why", why), ("csrf", alice_token.as_str())],
        ),
    ] {
        let reply = post(
            &console,
            session.map(String::as_str),
            "/purge",
            origin,
            &fields,
        )
        .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{origin:?} {fields:?}");
        assert!(reply.text().contains("refused"), "{}", reply.text());
    }
    assert_eq!(
        get(&console, Some(&alice), "/purge").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert!(
        bucket.join(key).is_file(),
        "a refused purge deleted the object"
    );

    // A reviewer may not purge or force; an unforced release of a reason it cannot fix is
    // refused; a release needs a written reason.
    for (path, fields) in [
        ("/purge", vec![("key", key), ("why", why)]),
        ("/release", vec![("key", key), ("why", why), ("force", "1")]),
    ] {
        let mut fields = fields;
        fields.push(("csrf", &bob_token));
        let reply = post(&console, Some(&bob), path, Some(&own_origin), &fields).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
        assert!(
            reply
                .text()
                .contains("needs the admin role; bob is signed in as a reviewer"),
            "{}",
            reply.text()
        );
    }
    let unforced = post(
        &console,
        Some(&bob),
        "/release",
        Some(&own_origin),
        &[("key", key), ("why", why), ("csrf", &bob_token)],
    )
    .await;
    assert_eq!(unforced.status, StatusCode::CONFLICT, "{}", unforced.text());
    assert!(
        unforced.text().contains("only a forced release"),
        "{}",
        unforced.text()
    );
    let no_reason = post(
        &console,
        Some(&bob),
        "/release",
        Some(&own_origin),
        &[
            ("key", &seeded.script_text),
            ("why", "   "),
            ("csrf", &bob_token),
        ],
    )
    .await;
    assert_eq!(no_reason.status, StatusCode::BAD_REQUEST);
    assert!(no_reason.text().contains("a written reason is required"));
    assert!(
        page(&console, &bob, "/audit")
            .await
            .contains("Chain intact: 0 entries")
    );

    // A reviewer rescans the upload quarantined while the scanner was down: a real clamd
    // (started for it) finds it clean, and it is promoted.
    let rescanned = post(
        &console,
        Some(&bob),
        "/rescan",
        Some(&own_origin),
        &[
            ("key", &seeded.plain_text),
            ("why", "scanner was down"),
            ("csrf", &bob_token),
        ],
    )
    .await;
    assert_eq!(
        rescanned.status,
        StatusCode::SEE_OTHER,
        "{}",
        rescanned.text()
    );
    assert_eq!(
        rescanned.location.as_deref(),
        Some(format!("{}&done=rescanned", item_path(&seeded.plain_text)).as_str())
    );
    let trusted = seeded.plain_text.replacen("quarantine/", "trusted/", 1);
    assert_eq!(
        std::fs::read(bucket.join(&trusted)).unwrap(),
        b"quarterly figures\n"
    );
    // A rescan of an upload quarantined for what it is, not an outage, is refused.
    let not_outage = post(
        &console,
        Some(&bob),
        "/rescan",
        Some(&own_origin),
        &[("key", key), ("why", "try again"), ("csrf", &bob_token)],
    )
    .await;
    assert_eq!(not_outage.status, StatusCode::CONFLICT);
    assert!(
        not_outage.text().contains("for an outage"),
        "{}",
        not_outage.text()
    );

    // A reviewer exports: the zip, as an attachment, encrypted with `infected`.
    let export = post(
        &console,
        Some(&bob),
        "/export",
        Some(&own_origin),
        &[
            ("key", &seeded.script_text),
            ("why", "for the malware lab"),
            ("csrf", &bob_token),
        ],
    )
    .await;
    assert_eq!(export.status, StatusCode::OK, "{}", export.text());
    assert_eq!(export.headers["content-type"], "application/zip");
    assert_eq!(export.headers["x-content-type-options"], "nosniff");
    let record: Value = serde_json::from_slice(
        &std::fs::read(bucket.join(format!("{}.json", seeded.script_text))).unwrap(),
    )
    .unwrap();
    let sha256 = record["sha256"].as_str().unwrap();
    assert_eq!(
        export.headers["content-disposition"],
        format!("attachment; filename=\"{sha256}.zip\"").as_str()
    );
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(export.body.clone())).unwrap();
    assert!(
        zip.by_name(&format!("{sha256}.bin")).is_err(),
        "an entry read without the password"
    );
    let mut sample = Vec::new();
    std::io::Read::read_to_end(
        &mut zip
            .by_name_decrypt(&format!("{sha256}.bin"), b"infected")
            .unwrap(),
        &mut sample,
    )
    .unwrap();
    assert_eq!(sample, HOSTILE_BYTES);
    assert!(!export.body.windows(8).any(|w| w == b"<script>"));

    // An admin forces the release of the JPEG declared as a PNG: scanned, sanitized,
    // promoted.
    let forced = post(
        &console,
        Some(&alice),
        "/release",
        Some(&own_origin),
        &[
            ("key", key),
            ("why", "a JPEG, as the user says; checked by hand"),
            ("force", "1"),
            ("csrf", &alice_token),
        ],
    )
    .await;
    assert_eq!(forced.status, StatusCode::SEE_OTHER, "{}", forced.text());
    assert_eq!(
        forced.location.as_deref(),
        Some(format!("{}&done=released", item_path(key)).as_str())
    );
    assert!(!bucket.join(key).exists());
    assert!(
        bucket
            .join(key.replacen("quarantine/", "trusted/", 1))
            .is_file()
    );

    // An admin purges: the object goes, the record and a tombstone stay.
    let script_key = seeded.script_text.as_str();
    let purged = post(
        &console,
        Some(&alice),
        "/purge",
        Some(&own_origin),
        &[
            ("key", script_key),
            ("why", "hostile <b>script</b>, not worth keeping"),
            ("csrf", &alice_token),
        ],
    )
    .await;
    assert_eq!(purged.status, StatusCode::SEE_OTHER, "{}", purged.text());
    assert_eq!(
        purged.location.as_deref(),
        Some(format!("{}&done=purged", item_path(script_key)).as_str())
    );
    assert!(!bucket.join(script_key).exists());
    assert!(bucket.join(format!("{script_key}.json")).is_file());
    let tombstone: Value = serde_json::from_slice(
        &std::fs::read(bucket.join(format!("{script_key}.tombstone.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(tombstone["purgedBy"], "alice");
    let item = page(
        &console,
        &alice,
        &format!("{}&done=purged", item_path(script_key)),
    )
    .await;
    assert!(item.contains("Purged; a tombstone was kept."), "{item}");
    assert!(
        !item.contains("action=\"purge\""),
        "a purged item offers actions"
    );

    // The audit trail: every action under the signed-in name, the chain intact.
    let audit = page(&console, &alice, "/audit").await;
    assert!(audit.contains("Chain intact: 4 entries"), "{audit}");
    for (who, action, change) in [
        ("bob", "rescan", "quarantined → released"),
        ("bob", "export", "quarantined → quarantined"),
        ("alice", "release", "quarantined → released"),
        ("alice", "purge", "quarantined → purged"),
    ] {
        assert!(
            audit.contains(&format!(
                "<td>{who}</td><td class=\"code\">{action}</td><td>{change}</td>"
            )),
            "{who} {action}: {audit}"
        );
    }
    assert!(
        audit.contains("hostile &lt;b&gt;script&lt;/b&gt;, not worth keeping"),
        "{audit}"
    );

    // Signing out ends the session: its cookie and its token open nothing any more.
    let out = post(
        &console,
        Some(&alice),
        "/signout",
        Some(&own_origin),
        &[("csrf", &alice_token)],
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location.as_deref(), Some("/signin"));
    assert!(out.cookie.unwrap().contains("Max-Age=0"));
    assert_eq!(
        get(&console, Some(&alice), "/").await.status,
        StatusCode::SEE_OTHER
    );
    let after = post(
        &console,
        Some(&alice),
        "/purge",
        Some(&own_origin),
        &[
            ("key", &seeded.plain_text),
            ("why", why),
            ("csrf", &alice_token),
        ],
    )
    .await;
    assert_eq!(after.status, StatusCode::FORBIDDEN);
    assert!(after.text().contains("sign in first"), "{}", after.text());
    // Bob's session is his own: still open.
    assert_eq!(get(&console, Some(&bob), "/").await.status, StatusCode::OK);
    console.shutdown().await;

    // Without configured tokens, one admin token is generated, and signs in.
    let generated = start(&data, None).await;
    let token = generated
        .generated_token
        .clone()
        .expect("a generated token");
    assert_eq!(token.len(), 64);
    let admin = sign_in(&generated, &token).await;
    assert!(
        page(&generated, &admin, "/")
            .await
            .contains("<strong>admin</strong> (admin)")
    );
    generated.shutdown().await;
}

#[tokio::test]
async fn the_console_listens_on_loopback_only_and_refuses_bad_tokens_files() {
    let dir = tempfile::tempdir().unwrap();
    let args = |listen: &str, tokens: Option<&str>| ConsoleArgs {
        data: ReviewDataArgs {
            data_dir: dir.path().to_owned(),
            bucket: "airlock-uploads".into(),
        },
        listen: listen.parse().unwrap(),
        access: AccessArgs {
            tokens_file: None,
            tokens: tokens.map(str::to_owned),
            session_hours: 8,
        },
        scanner: scanner_args(),
    };
    let err = console::start(&args("0.0.0.0:0", None)).await.unwrap_err();
    assert!(err.to_string().contains("loopback"), "{err}");
    let err = console::start(&args("127.0.0.1:0", Some("owner carol carol-token-000001")))
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("AIRLOCK_CONSOLE_TOKENS, entry 1: unknown role"),
        "{err:#}"
    );
}
