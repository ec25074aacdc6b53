//! The admin API and the CLI's two modes.

use crate::helpers::{answer, spawn_app, spawn_app_with, TestApp};

#[test]
fn the_admin_api_needs_a_token_with_the_admin_scope() {
    let app = spawn_app();
    let url = format!("{}/admin/api/clients", app.base);
    let (status, body) = answer(app.agent.get(&url).call());
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token"))
    );
    let (id, secret) = app.create_client(&["--scope", "read"]);
    let token = app.token(&id, &secret, None)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = answer(
        app.agent
            .get(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .call(),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("insufficient_scope"))
    );

    let bearer = format!("Bearer {}", app.admin_token());
    let (status, list) = answer(app.agent.get(&url).header("Authorization", &bearer).call());
    assert_eq!(status, 200);
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["client_id"] == id.as_str()));
    let (status, body) = answer(
        app.agent
            .post(&url)
            .header("Authorization", &bearer)
            .send_json(
                serde_json::json!({"name": "api", "redirect_uris": ["http://example.com/cb"]}),
            ),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let (status, _) = answer(
        app.agent
            .get(&format!("{url}/does-not-exist"))
            .header("Authorization", &bearer)
            .call(),
    );
    assert_eq!(status, 404);
    let (status, audit) = answer(
        app.agent
            .get(&format!(
                "{}/admin/api/audit?client={id}&type=AccessTokenIssued",
                app.base
            ))
            .header("Authorization", &bearer)
            .call(),
    );
    assert_eq!(status, 200);
    assert_eq!(audit["events"].as_array().unwrap().len(), 1);
}

#[test]
fn client_commands_answer_the_same_with_the_server_running_or_stopped() {
    let mut app = spawn_app();
    let created = app.cli_json(&[
        "client",
        "create",
        "--name",
        "billing",
        "--id",
        "billing",
        "--scope",
        "read",
        "--redirect-uri",
        "https://billing.example/cb",
        "--format",
        "json",
    ]);
    assert_eq!(created["client_id"], "billing");
    assert!(created["client_secret"].as_str().unwrap().len() >= 43);
    for field in ["redirect_uris", "grant_types", "scopes"] {
        assert!(created[field].is_array(), "{field}");
    }
    let updated = app.cli_json(&[
        "client",
        "update",
        "billing",
        "--add-redirect-uri",
        "http://127.0.0.1:9000/cb",
        "--scope",
        "read write",
        "--format",
        "json",
    ]);
    assert_eq!(updated["scopes"], serde_json::json!(["read", "write"]));
    assert!(
        updated.get("client_secret").is_none(),
        "a secret is shown only at create and rotate"
    );
    let running_show = app.cli_json(&["client", "show", "billing", "--format", "json"]);
    let running_list = app.cli_json(&["client", "list", "--format", "json"]);
    let running_audit = app.cli(&["audit", "query", "--client", "billing", "--format", "jsonl"]);
    app.stop();
    assert_eq!(
        app.cli_json(&["client", "show", "billing", "--format", "json"]),
        running_show
    );
    assert_eq!(
        app.cli_json(&["client", "list", "--format", "json"]),
        running_list
    );
    let stopped_audit = app.cli(&["audit", "query", "--client", "billing", "--format", "jsonl"]);
    assert_eq!(stopped_audit.stdout, running_audit.stdout);
    let lines: Vec<serde_json::Value> = String::from_utf8(stopped_audit.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let types: Vec<_> = lines
        .iter()
        .map(|l| l["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        types,
        [
            "ClientRegistered",
            "ClientRedirectUriAdded",
            "ClientScopesChanged"
        ]
    );
    for f in [
        "position",
        "stream",
        "version",
        "type",
        "recorded_at",
        "data",
        "metadata",
    ] {
        assert!(lines[0].get(f).is_some(), "jsonl line lacks {f}");
    }
    // Stopped: the CLI works on the store directly and the server sees it after a restart.
    let out = app.cli(&["client", "delete", "billing"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    app.start();
    let out = app.cli(&["client", "show", "billing"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

#[test]
fn the_clock_moves_only_on_a_server_started_with_a_test_clock() {
    let move_clock = |app: &TestApp| {
        answer(
            app.agent
                .post(&format!("{}/admin/api/clock", app.base))
                .header("Authorization", &format!("Bearer {}", app.admin_token()))
                .send_json(serde_json::json!({ "advance_ms": 60_000 })),
        )
    };
    let plain = spawn_app();
    let (status, body) = move_clock(&plain);
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let app = spawn_app_with(&["--test-clock"]);
    let before = helpers_now_ms();
    let (status, body) = move_clock(&app);
    assert_eq!(status, 200, "{body}");
    assert!(
        body["now_ms"].as_i64().unwrap() >= before + 60_000,
        "{body}"
    );
    // Unauthenticated, it is refused like every admin route.
    let (status, _) = answer(
        app.agent
            .post(&format!("{}/admin/api/clock", app.base))
            .send_json(serde_json::json!({ "advance_ms": 1 })),
    );
    assert_eq!(status, 401);
}

fn helpers_now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.unwrap().as_millis() as i64
}

#[test]
fn only_a_client_registered_as_admin_may_hold_the_admin_scope() {
    let app = spawn_app();
    // Neither the CLI nor the admin API gives an ordinary client the admin scope.
    let out = app.cli(&[
        "client",
        "create",
        "--name",
        "sneaky",
        "--scope",
        "read admin",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--admin"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bearer = format!("Bearer {}", app.admin_token());
    let url = format!("{}/admin/api/clients", app.base);
    let (status, body) = answer(
        app.agent
            .post(&url)
            .header("Authorization", &bearer)
            .send_json(serde_json::json!({"name": "sneaky", "scopes": ["admin"]})),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let (plain, _) = app.create_client(&["--scope", "read"]);
    let out = app.cli(&["client", "update", &plain, "--scope", "read admin"]);
    assert!(
        !out.status.success(),
        "an ordinary client was given the admin scope"
    );
    // A client registered as an admin holds it, the flag is recorded, and its token works.
    let (ops, ops_secret) = app.create_client(&["--scope", "admin", "--admin"]);
    let shown = app.cli_json(&["client", "show", &ops, "--format", "json"]);
    assert_eq!(shown["admin"], true, "{shown}");
    let registered = app.events("ClientRegistered");
    assert!(
        registered
            .iter()
            .any(|e| e["data"]["client_id"] == ops.as_str() && e["data"]["admin"] == true),
        "{registered:?}"
    );
    let token = app.token(&ops, &ops_secret, Some("admin"))["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = answer(
        app.agent
            .get(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .call(),
    );
    assert_eq!(status, 200);
}

#[test]
fn user_profiles_are_set_by_the_cli_and_the_admin_api_and_recorded_without_passwords() {
    const PW: &str = "wonderland-pw-42";
    let mut app = spawn_app();
    // Stopped: the CLI registers the user with a profile directly on the store.
    app.stop();
    let out = app.cli_stdin(
        &[
            "user",
            "create",
            "--username",
            "alice+ops",
            "--password-stdin",
            "--name",
            "Alice Liddell",
            "--email",
            "alice@example.test",
            "--locale",
            "en",
            "--format",
            "json",
        ],
        &format!("{PW}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["name"], "Alice Liddell", "{created}");
    assert_eq!(created["email"], "alice@example.test");
    assert_eq!(created["email_verified"], false);
    assert_eq!(created["locale"], "en");
    assert!(created.get("password").is_none() && created.get("password_hash").is_none());
    // A malformed claim is refused without being echoed, and registers nobody.
    let out = app.cli_stdin(
        &[
            "user",
            "create",
            "--username",
            "bob",
            "--password-stdin",
            "--email",
            "bob at example",
        ],
        &format!("{PW}\n"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("email must be") && !err.contains("bob at"),
        "{err}"
    );

    // Running: the CLI goes through the admin API.
    app.start();
    let updated = app.cli_json(&[
        "user",
        "update",
        "alice+ops",
        "--given-name",
        "Alice",
        "--family-name",
        "Liddell",
        "--email-verified",
        "--locale",
        "en-GB",
        "--format",
        "json",
    ]);
    assert_eq!(updated["given_name"], "Alice", "{updated}");
    assert_eq!(updated["family_name"], "Liddell");
    assert_eq!(updated["email_verified"], true);
    assert_eq!(updated["locale"], "en-GB");
    assert_eq!(updated["name"], "Alice Liddell", "claims not named stay");
    let out = app.cli(&["user", "update", "alice+ops"]);
    assert!(
        !out.status.success(),
        "an update that names nothing is refused"
    );
    let out = app.cli(&["user", "update", "nobody", "--locale", "en"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));

    let bearer = format!("Bearer {}", app.admin_token());
    let patch = |user: &str, body: serde_json::Value| {
        answer(
            app.agent
                .patch(&format!("{}/admin/api/users/{user}", app.base))
                .header("Authorization", &bearer)
                .send_json(&body),
        )
    };
    // An empty string clears a claim; the others stay.
    let (status, patched) = patch(
        "alice%2Bops",
        serde_json::json!({"name": "", "preferred_username": "alice"}),
    );
    assert_eq!(status, 200, "{patched}");
    assert!(patched.get("name").is_none(), "{patched}");
    assert_eq!(patched["preferred_username"], "alice");
    assert_eq!(patched["email_verified"], true);
    // The same claims again record nothing.
    let (status, again) = patch(
        "alice%2Bops",
        serde_json::json!({"preferred_username": "alice"}),
    );
    assert_eq!((status, &again), (200, &patched));
    // A new address is unverified unless the change says otherwise.
    let (status, moved) = patch(
        "alice%2Bops",
        serde_json::json!({"email": "alice@wonderland.test"}),
    );
    assert_eq!(status, 200, "{moved}");
    assert_eq!(
        (moved["email"].as_str(), moved["email_verified"].as_bool()),
        (Some("alice@wonderland.test"), Some(false))
    );
    // Refusals: RFC 6749 error JSON, in its character set, never quoting what was sent.
    for (body, hidden) in [
        (serde_json::json!({"locale": "en_GB<script>"}), "script"),
        (serde_json::json!({"email": "x\u{7}@secret.test"}), "secret"),
        (serde_json::json!({"family_name": "Lid\ndell"}), "Lid"),
        (serde_json::json!({"email_verified": "hunter2"}), "hunter2"),
        (serde_json::json!({"password": "hunter2"}), "hunter2"),
    ] {
        let (status, err) = patch("alice%2Bops", body.clone());
        assert_eq!(
            (status, err["error"].as_str()),
            (400, Some("invalid_request")),
            "{body}: {err}"
        );
        let d = err["error_description"].as_str().unwrap();
        assert!(!d.contains(hidden), "{body}: {d}");
        assert!(
            d.bytes()
                .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e)),
            "{d}"
        );
    }
    let (status, err) = patch("nobody", serde_json::json!({"locale": "en"}));
    assert_eq!(
        (status, err["error"].as_str()),
        (404, Some("not_found")),
        "{err}"
    );

    // The admin API registers with a profile too, and refuses a bad one before registering.
    let users = format!("{}/admin/api/users", app.base);
    let (status, carol) = answer(
        app.agent
            .post(&users)
            .header("Authorization", &bearer)
            .send_json(serde_json::json!({"username": "carol", "password": PW,
                           "email": "carol@example.test", "email_verified": true})),
    );
    assert_eq!(status, 201, "{carol}");
    assert_eq!(
        (carol["email"].as_str(), carol["email_verified"].as_bool()),
        (Some("carol@example.test"), Some(true))
    );
    let (status, _) = answer(
        app.agent
            .post(&users)
            .header("Authorization", &bearer)
            .send_json(
                serde_json::json!({"username": "dave", "password": PW, "locale": "not a tag"}),
            ),
    );
    assert_eq!(status, 400);

    // show and list print the profile, the same through the API and on the store.
    let running_show = app.cli_json(&["user", "show", "alice+ops", "--format", "json"]);
    assert_eq!(running_show, moved);
    let (status, api_show) = answer(
        app.agent
            .get(&format!("{users}/alice%2Bops"))
            .header("Authorization", &bearer)
            .call(),
    );
    assert_eq!((status, &api_show), (200, &moved));
    let running_list = app.cli_json(&["user", "list", "--format", "json"]);
    let names: Vec<_> = running_list
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["alice+ops", "carol"],
        "no user was registered by a refusal"
    );
    assert!(running_list.as_array().unwrap().contains(&moved));
    let table = app.cli(&["user", "show", "alice+ops"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("family_name") && table.contains("Liddell"),
        "{table}"
    );

    // The trail: one UserProfileChanged per change, none for the no-op, no password anywhere.
    let changes = app.events("UserProfileChanged");
    assert_eq!(changes.len(), 5, "{changes:?}");
    for e in &changes {
        let data = &e["data"];
        assert!(data.get("password").is_none() && data.get("password_hash").is_none());
        assert!(data["profile"].get("password").is_none());
        assert!(!e.to_string().contains(PW) && !e.to_string().contains("argon2"));
        assert!(data["updated_at"].as_i64().unwrap() > 1_600_000_000);
    }
    assert_eq!(changes[0]["data"]["profile"]["name"], "Alice Liddell");
    assert_eq!(
        changes[3]["data"]["profile"]["email"],
        "alice@wonderland.test"
    );

    app.stop();
    assert_eq!(
        app.cli_json(&["user", "show", "alice+ops", "--format", "json"]),
        running_show
    );
    assert_eq!(
        app.cli_json(&["user", "list", "--format", "json"]),
        running_list
    );
}

/// Found by the OpenAPI fuzzer: an array was read as the object it stood for, field by field;
/// and an admin client could delete itself or take its own admin scope away, locking out
/// whoever held only its credentials.
#[test]
fn the_admin_api_takes_only_objects_and_an_admin_client_cannot_delete_itself() {
    let app = spawn_app();
    let bearer = format!("Bearer {}", app.admin_token());
    let (status, body) = answer(
        app.agent
            .post(&format!("{}/admin/api/registration-tokens", app.base))
            .header("Authorization", &bearer)
            .header("Content-Type", "application/json")
            .send("[null, null]"),
    );
    assert_eq!(
        (status, body["error_description"].as_str()),
        (400, Some("the body must be a JSON object")),
        "{body}"
    );
    assert!(app.events("InitialAccessTokenIssued").is_empty());

    let admin: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(app.data_dir().join("admin.json")).unwrap())
            .unwrap();
    let own = admin["client_id"].as_str().unwrap();
    let (status, body) = answer(
        app.agent
            .delete(&format!("{}/admin/api/clients/{own}", app.base))
            .header("Authorization", &bearer)
            .call(),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    assert!(app.events("ClientDeleted").is_empty());
    // Nor change itself: taking its own admin scope away would lock it out the same way.
    let (status, body) = answer(
        app.agent
            .patch(&format!("{}/admin/api/clients/{own}", app.base))
            .header("Authorization", &bearer)
            .send_json(serde_json::json!({"scopes": ["read"]})),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    assert!(app.events("ClientScopesChanged").is_empty());
    // Another admin client may; so may the CLI.
    let (other, other_secret) = app.create_client(&["--admin", "--scope", "admin"]);
    let other_token = app.token(&other, &other_secret, Some("admin"))["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = answer(
        app.agent
            .delete(&format!("{}/admin/api/clients/{own}", app.base))
            .header("Authorization", &format!("Bearer {other_token}"))
            .call(),
    );
    assert_eq!(status, 204);
    // (The CLI speaks to a running server with admin.json's client, deleted now.)
    let (status, page) = answer(
        app.agent
            .get(&format!("{}/admin/api/audit?type=ClientDeleted", app.base))
            .header("Authorization", &format!("Bearer {other_token}"))
            .call(),
    );
    assert_eq!(status, 200);
    let deleted = page["events"].as_array().unwrap();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["metadata"]["caused_by"]["id"], other.as_str());
}

/// Each path's other methods get 405 with the methods the route table gives it.
#[test]
fn other_methods_get_405_with_the_routes_methods() {
    let app = spawn_app();
    for (path, allow) in [
        ("/login", "GET, POST"),
        ("/register/abc", "GET, PUT, DELETE"),
        ("/admin/api/clients", "POST, GET"),
        ("/openapi.json", "GET"),
    ] {
        let mut res = app
            .agent
            .patch(&format!("{}{path}", app.base))
            .send_empty()
            .unwrap();
        assert_eq!(res.status(), 405, "{path}");
        assert_eq!(res.headers().get("allow").unwrap(), allow, "{path}");
        let body: serde_json::Value = res.body_mut().read_json().unwrap();
        assert_eq!(body["error"], "invalid_request", "{path}");
    }
}
