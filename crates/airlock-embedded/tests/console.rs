//! `airlock console` over HTTP: a real server on a free loopback port, over a data dir whose
//! quarantine the real pipeline filled (its scanner down, so a clean upload lands as
//! `scan-unavailable`, and two mismatched ones as `type-mismatch`), and a real clamd for the
//! release. Filters, escaping of hostile upload values and bytes, the CSRF and Host guards,
//! reasons required, purge's tombstone and audit entry, release.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use airlock_embedded::cases::{self, Case, Prepared};
use airlock_embedded::console::{self, CONTENT_SECURITY_POLICY, ConsoleArgs, ConsoleHandle};
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

async fn start(data_dir: &Path, reviewer: Option<&str>) -> ConsoleHandle {
    console::start(&ConsoleArgs {
        data: ReviewDataArgs {
            data_dir: data_dir.to_owned(),
            bucket: "airlock-uploads".into(),
        },
        listen: "127.0.0.1:0".parse().unwrap(),
        reviewer: reviewer.map(str::to_owned),
        scanner: ScannerArgs {
            clamd: None,
            signatures: repo().join("fixtures/clamav"),
            policies: None,
            max_definitions_age_hours: airlock_core::definitions::MaxAge(Some(
                airlock_core::definitions::DEFAULT_MAX_AGE,
            )),
        },
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

async fn get(console: &ConsoleHandle, path_and_query: &str) -> (StatusCode, String) {
    let response = client()
        .get(format!("{}{path_and_query}", console.url()))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap();
    assert_eq!(
        headers["content-security-policy"], CONTENT_SECURITY_POLICY,
        "{path_and_query}"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    // No page, whatever it shows, carries a script.
    assert!(!body.contains("<script"), "{path_and_query}: {body}");
    (status, body)
}

fn item_path(key: &str) -> String {
    format!(
        "/item?key={}",
        key.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    )
}

/// The anti-CSRF token of an item page's forms.
fn token_of(page: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).expect("a form with a token") + marker.len();
    page[start..start + 64].to_owned()
}

/// A form post; `origin` None sends none.
async fn post(
    console: &ConsoleHandle,
    path: &str,
    origin: Option<&str>,
    fields: &[(&str, &str)],
) -> (StatusCode, Option<String>, String) {
    let body = fields
        .iter()
        .map(|(name, value)| {
            let encoded: String = value
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() {
                        char::from(b).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            format!("{name}={encoded}")
        })
        .collect::<Vec<_>>()
        .join("&");
    let mut request = client()
        .post(format!("{}{path}", console.url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    (status, location, response.text().await.unwrap())
}

fn rows(page: &str) -> usize {
    page.matches("<tr><td><a href=\"/item?key=").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // Reason: one reviewer's session, in order.
async fn a_reviewer_filters_inspects_purges_and_releases_and_the_console_guards_its_actions() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let seeded = seed(&data, dir.path()).await;
    let bucket = data.join("buckets/airlock-uploads");
    let console = start(&data, Some("alice")).await;
    let own_origin = console.url();

    // The list: everything, escaped; counts by reason.
    let (status, all) = get(&console, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rows(&all), 3, "{all}");
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
        let (status, page) = get(&console, query).await;
        assert_eq!(status, StatusCode::OK, "{query}");
        assert_eq!(rows(&page), expected.len(), "{query}: {page}");
        for key in expected {
            assert!(page.contains(&item_path(key)), "{query}: {key} missing");
        }
        assert!(
            !page.contains(&item_path(absent)),
            "{query}: {absent} shown"
        );
    }
    for query in ["/?since=2999-01-01", "/?status=purged"] {
        let (_, page) = get(&console, query).await;
        assert_eq!(rows(&page), 0, "{query}");
        assert!(page.contains("No quarantined uploads match"), "{query}");
    }
    let (status, page) = get(&console, "/?reason=not-a-reason").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        page.contains("reason: &quot;not-a-reason&quot; is not a reason code"),
        "{page}"
    );

    // The item page: hostile values as text, the bytes as an escaped hex dump.
    let (status, item) = get(&console, &item_path(&seeded.mismatch)).await;
    assert_eq!(status, StatusCode::OK);
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
    let (_, script_item) = get(&console, &item_path(&seeded.script_text)).await;
    assert!(
        script_item.contains("3c 73 63 72 69 70 74 3e") // `<script>` in hex
            && script_item.contains("|&lt;script&gt;alert(3)|"),
        "{script_item}"
    );
    let token = token_of(&item);
    assert_eq!(token, token_of(&script_item), "one token per process");
    let (status, _) = get(&console, &item_path("quarantine/acme/avatar/nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Another name for this address (DNS rebinding) gets nothing.
    let response = client()
        .get(format!("{}/", console.url()))
        .header("host", format!("attacker.example:{}", console.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST);
    assert!(!response.text().await.unwrap().contains(&seeded.mismatch));

    // Actions without the token, from another origin, without an origin, or by GET: refused.
    let key = seeded.mismatch.as_str();
    let why = "purged after review";
    for (origin, fields) in [
        (Some(own_origin.as_str()), vec![("key", key), ("why", why)]),
        (
            Some(own_origin.as_str()),
            vec![("key", key), ("why", why), ("csrf", &"0".repeat(64))],
        ),
        (
            Some("http://attacker.example"),
            vec![("key", key), ("why", why), ("csrf", &token)],
        ),
        (None, vec![("key", key), ("why", why), ("csrf", &token)]),
    ] {
        let (status, _, page) = post(&console, "/purge", origin, &fields).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin:?} {fields:?}");
        assert!(page.contains("refused"), "{page}");
    }
    let (status, _) = get(&console, "/purge").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        bucket.join(key).is_file(),
        "a refused purge deleted the object"
    );

    // A release without a written reason is refused before anything runs.
    let (status, _, page) = post(
        &console,
        "/release",
        Some(&own_origin),
        &[
            ("key", &seeded.script_text),
            ("why", "   "),
            ("csrf", &token),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("a written reason is required"), "{page}");
    let (_, audit) = get(&console, "/audit").await;
    assert!(audit.contains("Chain intact: 0 entries"), "{audit}");

    // Purge with a reason: the object goes, the record and a tombstone stay, and the audit
    // trail records who and why.
    let (status, location, _) = post(
        &console,
        "/purge",
        Some(&own_origin),
        &[
            ("key", key),
            ("why", "hostile <b>name</b>, not worth keeping"),
            ("csrf", &token),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        location.as_deref(),
        Some(format!("{}&done=purged", item_path(key)).as_str())
    );
    assert!(!bucket.join(key).exists());
    assert!(bucket.join(format!("{key}.json")).is_file());
    let tombstone: Value = serde_json::from_slice(
        &std::fs::read(bucket.join(format!("{key}.tombstone.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(tombstone["purgedBy"], "alice");
    assert_eq!(tombstone["why"], "hostile <b>name</b>, not worth keeping");
    let (_, item) = get(&console, &format!("{}&done=purged", item_path(key))).await;
    assert!(item.contains("Purged; a tombstone was kept."), "{item}");
    assert!(
        item.contains("The object is no longer in quarantine"),
        "{item}"
    );
    assert!(
        !item.contains("action=\"/purge\""),
        "a purged item offers actions"
    );
    let (_, audit) = get(&console, "/audit").await;
    assert!(audit.contains("Chain intact: 1 entries"), "{audit}");
    assert!(
        audit.contains("<td>alice</td><td class=\"code\">purge</td><td>quarantined → purged</td>"),
        "{audit}"
    );
    assert!(
        audit.contains("hostile &lt;b&gt;name&lt;/b&gt;, not worth keeping"),
        "{audit}"
    );
    let (_, purged) = get(&console, "/?status=purged").await;
    assert_eq!(rows(&purged), 1, "{purged}");

    // Release with a reason: rescanned by a real clamd (started for it) and promoted.
    let (status, location, page) = post(
        &console,
        "/release",
        Some(&own_origin),
        &[
            ("key", &seeded.plain_text),
            ("why", "scanner was down; bytes look fine"),
            ("csrf", &token),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    assert_eq!(
        location.as_deref(),
        Some(format!("{}&done=released", item_path(&seeded.plain_text)).as_str())
    );
    let trusted = seeded.plain_text.replacen("quarantine/", "trusted/", 1);
    assert_eq!(
        std::fs::read(bucket.join(&trusted)).unwrap(),
        b"quarterly figures\n"
    );
    let (_, audit) = get(&console, "/audit?action=release").await;
    assert!(
        audit.contains("scanner was down; bytes look fine"),
        "{audit}"
    );
    let (_, audit) = get(&console, "/audit").await;
    assert!(audit.contains("Chain intact: 2 entries"), "{audit}");
    console.shutdown().await;

    // Without a reviewer the console is read-only: no forms, and a post is refused.
    let read_only = start(&data, None).await;
    let (_, item) = get(&read_only, &item_path(&seeded.script_text)).await;
    assert!(
        item.contains("Read-only") && !item.contains("name=\"csrf\""),
        "{item}"
    );
    read_only.shutdown().await;
}

#[tokio::test]
async fn the_console_listens_on_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let err = console::start(&ConsoleArgs {
        data: ReviewDataArgs {
            data_dir: dir.path().to_owned(),
            bucket: "airlock-uploads".into(),
        },
        listen: "0.0.0.0:0".parse().unwrap(),
        reviewer: Some("alice".into()),
        scanner: ScannerArgs {
            clamd: None,
            signatures: repo().join("fixtures/clamav"),
            policies: None,
            max_definitions_age_hours: airlock_core::definitions::MaxAge(Some(
                airlock_core::definitions::DEFAULT_MAX_AGE,
            )),
        },
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("loopback"), "{err}");
}
