//! The OpenAPI contract at `/openapi.json`: it validates as OpenAPI 3.1, and schemathesis (a
//! property-based fuzzer that reads it, from PyPI: tests/clients/requirements.txt) finds no
//! 5xx and no answer outside it against a live server. Every route being in the contract is
//! the unit test `http::openapi::tests::every_route_is_in_the_contract_and_nothing_else`.

use crate::clients::python;
use crate::helpers::*;
use serde_json::Value;
use std::process::Command;

/// Seconds each fuzzing pass may take (schemathesis repeats fuzzing until they are spent).
const PASS_SECS: &str = "45";

/// What every pass checks: no 5xx, every status, content type and JSON body as documented.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance";

/// Runs schemathesis on the contract against `app`, with `config` as its schemathesis.toml.
fn schemathesis(app: &TestApp, what: &str, config: &str, args: &[&str]) {
    let doc = app.dir.path().join("openapi.json");
    let config_file = app.dir.path().join("schemathesis.toml");
    std::fs::write(&config_file, config).unwrap();
    let bin = python().with_file_name("schemathesis");
    let out = Command::new(&bin)
        .arg("--no-color")
        .arg("--config-file")
        .arg(&config_file)
        .arg("run")
        .arg(&doc)
        .args(["--url", &app.base])
        .args(["--max-examples", "50", "--max-time", PASS_SECS])
        .args(["--request-timeout", "10"])
        // The event stream is a long-lived answer by design: it ends when the client goes.
        .args(["--exclude-path", "/admin/api/events/stream"])
        .args(args)
        // Its own state (.schemathesis, .hypothesis) goes with the data directory.
        .current_dir(app.dir.path())
        .output()
        .unwrap_or_else(|e| panic!("{} could not run: {e}", bin.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found answers outside the contract ({what}):\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A pass that tested nothing would succeed too.
    assert!(stdout.contains("passed"), "{what}: {stdout}");
    let counts = stdout
        .lines()
        .skip_while(|l| !l.contains("Test cases:"))
        .nth(1);
    eprintln!("schemathesis, {what}: {}", counts.unwrap_or("?").trim());
}

#[test]
fn the_contract_validates_and_the_fuzzer_finds_no_5xx_and_nothing_outside_it() {
    let app = spawn_app_with(&[
        // The fuzzer's thousands of requests should reach the handlers, not the limits
        // (429 is documented and answered as such all the same).
        "--rate-limit-token",
        "1000000",
        "--rate-limit-introspect",
        "1000000",
        "--rate-limit-pages",
        "1000000",
        "--rate-limit-register",
        "1000000",
    ]);
    let res = app
        .agent
        .get(&format!("{}/openapi.json", app.base))
        .call()
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers().get("content-type").unwrap(),
        "application/json"
    );
    let text = res.into_body().read_to_string().unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
    for (path, method) in [
        ("/token", "post"),
        ("/authorize", "get"),
        ("/introspect", "post"),
        ("/admin/api/clients", "post"),
        ("/admin/api/clients/{id}", "patch"),
        ("/openapi.json", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
    std::fs::write(app.dir.path().join("openapi.json"), &text).unwrap();

    // It validates against the OpenAPI 3.1 schema (openapi-spec-validator, from PyPI).
    let out = Command::new(python())
        .args([
            "-c",
            "import json, sys\n\
             from openapi_spec_validator import validate\n\
             from openapi_spec_validator.validation import OpenAPIV31SpecValidator\n\
             validate(json.load(open(sys.argv[1])), cls=OpenAPIV31SpecValidator)\n\
             print('valid')",
        ])
        .arg(app.dir.path().join("openapi.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the contract does not validate as OpenAPI 3.1: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The OAuth endpoints, as a confidential client with every grant that needs no user
    // would: valid credentials take the fuzzer past authentication. Also checked: what the
    // contract calls invalid is refused.
    let (id, secret) = app.create_client(&[
        "--grant-type",
        "client_credentials",
        "--grant-type",
        "authorization_code",
        "--grant-type",
        "refresh_token",
        "--grant-type",
        "urn:ietf:params:oauth:grant-type:device_code",
        "--redirect-uri",
        "https://app.example/callback",
        "--scope",
        "openid",
        "--scope",
        "read",
        "--can-introspect",
    ]);
    schemathesis(
        &app,
        "OAuth endpoints, as a client",
        "",
        &[
            "--include-tag",
            "oauth",
            "--auth",
            &format!("{id}:{secret}"),
            "--checks",
            &format!("{CHECKS},negative_data_rejection"),
        ],
    );

    // Signed in to the console before the admin API's fuzzing may rotate the admin client's
    // secret (a session, like a token, outlives that).
    let (mut browser, _) = crate::console::admin(&app);
    let page = browser.get("/admin/clients/new");
    assert_eq!(page.status, 200, "{}", page.body);
    let token = page.field("csrf_token").unwrap();
    let cookie = browser
        .cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");

    // The admin API, as an admin: creates, changes and deletes whatever the fuzzer makes up
    // (and rotates the admin client's own secret: the token stays good till it expires).
    let admin = app.admin_token();
    schemathesis(
        &app,
        "the admin API",
        "",
        &[
            "--include-tag",
            "admin",
            "-H",
            &format!("Authorization: Bearer {admin}"),
            "--checks",
            &format!("{CHECKS},negative_data_rejection"),
        ],
    );

    // The pages, the console and the operations endpoints, as a browser signed in to the
    // console: its session cookie on every request, and its CSRF token in most forms (the
    // rest see the refusal of a form without it).
    let audit = |query: &str| {
        let mut res = app
            .agent
            .get(&format!("{}/admin/api/audit?{query}", app.base))
            .header("Authorization", &format!("Bearer {admin}"))
            .call()
            .unwrap();
        assert_eq!(res.status(), 200);
        res.body_mut().read_json::<Value>().unwrap()
    };
    let before = audit("limit=1")["head_position"].as_u64().unwrap();
    schemathesis(
        &app,
        "pages, console and operations",
        &format!(
            "[dictionaries.csrf]\nvalues = [\"{token}\"]\n\n\
             [parameters]\n\"body.csrf_token\" = {{ dictionary = \"csrf\", probability = 0.8 }}\n"
        ),
        &[
            "--include-tag-regex",
            "^(pages|console|operations)$",
            "-H",
            &format!("Cookie: {cookie}"),
            "--checks",
            CHECKS,
        ],
    );

    // The console's forms were reached, signed in and with the CSRF token: only the console
    // records changes caused by an admin in this pass (the admin API's pass is over).
    let after = audit(&format!("after={before}&limit=10000"));
    let by_console = after["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["metadata"]["caused_by"]["kind"] == "admin")
        .count();
    assert!(
        by_console > 0,
        "the console pass changed nothing: was its session refused? {after}"
    );
    eprintln!("the console pass recorded {by_console} changes caused by the admin");

    // After all of it, the log is whole.
    assert_eq!(app.get("/readyz").0, 200);
    let mut res = app
        .agent
        .get(&format!("{}/admin/api/audit/verify", app.base))
        .header("Authorization", &format!("Bearer {admin}"))
        .call()
        .unwrap();
    assert_eq!(res.status(), 200);
    let verify: Value = res.body_mut().read_json().unwrap();
    assert_eq!(verify["status"], "verified", "{verify}");
}
