//! The device authorization grant (RFC 8628): a device without a browser asks for a device
//! code and a short user code; the user enters the user code at `/device`, signs in and
//! approves or denies; meanwhile the device polls the token endpoint with the device code.
//!
//! Both codes are recorded as keyed hashes. Polls are not recorded (a device polls every few
//! seconds for minutes): their pace lives in the actor's memory and arrives here as [`Pace`];
//! a restart forgets it, which only lets one poll through early.

use crate::client::Client;
use crate::event::{
    DeviceAuthorizationApproved, DeviceAuthorizationDenied, DeviceAuthorizationStarted,
    DeviceCodeRedeemed, Event, OidcContext, TokenTerms,
};
use crate::grant::{
    allowed, check_resources, consent_granted, granted_scopes, new_family, ConsentView,
    FamilyStart, NewAccessToken, NewIdToken, NewRefreshToken,
};
use crate::token::{GrantRejected, Refusal, TokenError};
use crate::values::{GrantType, Scope, SecretHash, UserId};
use uuid::Uuid;

/// The characters of user codes (RFC 8628 §6.1): consonants only, so that no word is
/// spelled and none is mistaken for another; 20^8 codes of eight.
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";

/// Characters of a user code.
pub const USER_CODE_LEN: usize = 8;

/// How much `slow_down` adds to the interval (§3.5).
pub const SLOW_DOWN_STEP_SECS: u32 = 5;

/// A user code as typed, in its canonical form: letters of the alphabet only, upper-cased,
/// without the dash or spaces people type; `None` if it cannot be one.
pub fn normalize_user_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)))
        .then_some(code)
}

/// Start a device authorization (§3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartDevice {
    /// Keyed hash of the fresh device code.
    pub device_code_hash: SecretHash,
    /// Keyed hash of the fresh user code (canonical form).
    pub user_code_hash: SecretHash,
    /// Scopes asked for; `None`: the client's defaults.
    pub scopes: Option<Vec<Scope>>,
    /// Resources asked for (RFC 8707).
    pub resources: Vec<String>,
    /// Lifetime of the codes, in seconds.
    pub ttl_secs: u32,
    /// The least polling interval, in seconds.
    pub interval_secs: u32,
    /// Now (Unix seconds).
    pub now: i64,
}

/// What the read model knows of a device authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceView {
    /// As started.
    pub started: DeviceAuthorizationStarted,
    /// The user's answer, once given.
    pub decision: Option<DeviceDecision>,
    /// Tokens were issued for it.
    pub redeemed: bool,
    /// An administrator locked the account of the user who approved it.
    pub user_locked: bool,
}

/// A user's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceDecision {
    /// Approved.
    Approved(Box<DeviceAuthorizationApproved>),
    /// Denied.
    Denied,
}

impl DeviceView {
    /// Brings the view up to date with an event not yet in the read model.
    pub fn observe(&mut self, event: &Event) {
        let mine = |h: &SecretHash| *h == self.started.device_code_hash;
        match event {
            Event::DeviceAuthorizationApproved(e) if mine(&e.device_code_hash) => {
                self.decision = Some(DeviceDecision::Approved(Box::new(e.clone())));
            }
            Event::DeviceAuthorizationDenied(e) if mine(&e.device_code_hash) => {
                self.decision = Some(DeviceDecision::Denied);
            }
            Event::DeviceCodeRedeemed(e) if mine(&e.device_code_hash) => self.redeemed = true,
            _ => {}
        }
    }
}

/// A signed-in user's answer at the verification page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecideDevice {
    /// The authorization the user code named.
    pub device: Option<DeviceView>,
    /// The user.
    pub user_id: UserId,
    /// Approve (else deny).
    pub approve: bool,
    /// The user's remembered consent for the client, added to on approval.
    pub existing_consent: ConsentView,
    /// The sign-in, for an OpenID Connect request.
    pub oidc: Option<OidcContext>,
    /// Now (Unix seconds).
    pub now: i64,
}

/// How a device has been polling: filled in by the actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// When it last polled.
    pub last_poll_at: i64,
    /// The interval it must keep now.
    pub interval_secs: u32,
}

/// A poll of the token endpoint (§3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollDevice {
    /// Keyed hash of the presented device code.
    pub device_code_hash: SecretHash,
    /// Its view, if the read model knows it.
    pub device: Option<DeviceView>,
    /// How it polled before.
    pub pace: Option<Pace>,
    /// The new access token.
    pub token: NewAccessToken,
    /// The new refresh token.
    pub refresh: NewRefreshToken,
    /// The id_token, used when `openid` was approved.
    pub id_token: NewIdToken,
    /// The new family's id.
    pub family_id: Uuid,
    /// Now (Unix seconds).
    pub now: i64,
}

/// Decides [`StartDevice`].
pub fn start(client: &Client, cmd: &StartDevice) -> Result<Vec<Event>, Refusal> {
    allowed(client, GrantType::DeviceCode)?;
    let scopes = granted_scopes(client, &cmd.scopes)?;
    check_resources(client, &cmd.resources)?;
    Ok(vec![Event::DeviceAuthorizationStarted(
        DeviceAuthorizationStarted {
            client_id: client.client_id.clone(),
            device_code_hash: cmd.device_code_hash.clone(),
            user_code_hash: cmd.user_code_hash.clone(),
            scopes,
            terms: TokenTerms {
                audience: cmd.resources.clone(),
                ..TokenTerms::default()
            },
            issued_at: cmd.now,
            expires_at: cmd.now + i64::from(cmd.ttl_secs),
            interval_secs: cmd.interval_secs,
        },
    )])
}

fn unknown() -> Refusal {
    TokenError::InvalidGrant(GrantRejected::UnknownDeviceCode).into()
}

/// Decides [`DecideDevice`]: a user answers once, before the codes expire.
pub fn decide(client: &Client, cmd: &DecideDevice) -> Result<Vec<Event>, Refusal> {
    let Some(view) = cmd
        .device
        .as_ref()
        .filter(|v| v.started.client_id == client.client_id)
    else {
        return Err(unknown());
    };
    let started = &view.started;
    if cmd.now >= started.expires_at {
        return Err(TokenError::DeviceCodeExpired.into());
    }
    if view.decision.is_some() {
        return Err(TokenError::InvalidGrant(GrantRejected::DeviceAlreadyDecided).into());
    }
    if !cmd.approve {
        return Ok(vec![Event::DeviceAuthorizationDenied(
            DeviceAuthorizationDenied {
                client_id: client.client_id.clone(),
                device_code_hash: started.device_code_hash.clone(),
                user_id: cmd.user_id,
            },
        )]);
    }
    let mut events: Vec<Event> =
        consent_granted(client, cmd.user_id, &cmd.existing_consent, &started.scopes)
            .into_iter()
            .collect();
    events.push(Event::DeviceAuthorizationApproved(
        DeviceAuthorizationApproved {
            client_id: client.client_id.clone(),
            device_code_hash: started.device_code_hash.clone(),
            user_id: cmd.user_id,
            scopes: started.scopes.clone(),
            oidc: cmd
                .oidc
                .clone()
                .filter(|_| crate::grant::is_openid(&started.scopes)),
        },
    ));
    Ok(events)
}

/// Decides [`PollDevice`]: tokens once approved, else the §3.5 answer.
pub fn poll(client: &Client, cmd: &PollDevice) -> Result<Vec<Event>, Refusal> {
    allowed(client, GrantType::DeviceCode)?;
    let Some(view) = cmd
        .device
        .as_ref()
        .filter(|v| v.started.client_id == client.client_id)
    else {
        return Err(unknown());
    };
    if view.redeemed {
        return Err(TokenError::InvalidGrant(GrantRejected::DeviceCodeUsed).into());
    }
    if cmd.now >= view.started.expires_at {
        return Err(TokenError::DeviceCodeExpired.into());
    }
    if let Some(p) = cmd.pace {
        if cmd.now - p.last_poll_at < i64::from(p.interval_secs) {
            return Err(TokenError::SlowDown.into());
        }
    }
    let approved = match &view.decision {
        None => return Err(TokenError::AuthorizationPending.into()),
        Some(DeviceDecision::Denied) => return Err(TokenError::DeviceDenied.into()),
        Some(DeviceDecision::Approved(a)) => a,
    };
    if view.user_locked {
        return Err(TokenError::InvalidGrant(GrantRejected::AccountLocked).into());
    }
    let mut events = vec![Event::DeviceCodeRedeemed(DeviceCodeRedeemed {
        client_id: client.client_id.clone(),
        device_code_hash: cmd.device_code_hash.clone(),
        user_id: approved.user_id,
        family_id: cmd.family_id,
    })];
    events.extend(new_family(
        client,
        FamilyStart {
            user: approved.user_id,
            scopes: approved.scopes.clone(),
            grant: GrantType::DeviceCode,
            family_id: cmd.family_id,
            oidc: approved.oidc.as_ref(),
            terms: Some(&view.started.terms),
            now: cmd.now,
        },
        &cmd.token,
        &cmd.refresh,
        &cmd.id_token,
    )?);
    Ok(events)
}

/// The pace after a poll decided `outcome`: `slow_down` adds [`SLOW_DOWN_STEP_SECS`].
pub fn next_pace(
    before: Option<Pace>,
    base_interval: u32,
    outcome_slow_down: bool,
    now: i64,
) -> Pace {
    let interval = before.map_or(base_interval, |p| p.interval_secs);
    Pace {
        last_poll_at: now,
        interval_secs: if outcome_slow_down {
            interval + SLOW_DOWN_STEP_SECS
        } else {
            interval
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::tests::{id, registration};
    use crate::client::{self, ClientCommand, ClientState};
    use crate::testing::Scenario;
    use crate::token::{decide as decide_token, TokenCommand};
    use crate::values::HashKey;

    const NOW: i64 = 1_800_000_000;

    fn user() -> UserId {
        UserId(Uuid::from_u128(7))
    }

    fn registered() -> Event {
        let mut r = registration();
        r.public = true;
        r.secret_hash = None;
        r.grant_types = vec![GrantType::DeviceCode, GrantType::RefreshToken];
        client::decide(&ClientState::Unregistered, &ClientCommand::Register(r))
            .unwrap()
            .remove(0)
    }

    fn scenario() -> Scenario<ClientState, TokenCommand, Refusal> {
        Scenario::new(decide_token, client::evolve)
    }

    fn started() -> DeviceAuthorizationStarted {
        DeviceAuthorizationStarted {
            client_id: id(),
            device_code_hash: HashKey::for_tests().hash("device"),
            user_code_hash: HashKey::for_tests().hash("BCDFGHJK"),
            scopes: Scope::parse_list("read").unwrap(),
            terms: TokenTerms::default(),
            issued_at: NOW,
            expires_at: NOW + 600,
            interval_secs: 5,
        }
    }

    fn view(decision: Option<DeviceDecision>, redeemed: bool) -> DeviceView {
        DeviceView {
            started: started(),
            decision,
            redeemed,
            user_locked: false,
        }
    }

    fn approved() -> DeviceAuthorizationApproved {
        DeviceAuthorizationApproved {
            client_id: id(),
            device_code_hash: started().device_code_hash,
            user_id: user(),
            scopes: started().scopes,
            oidc: None,
        }
    }

    fn poll_cmd(device: Option<DeviceView>, pace: Option<Pace>, now: i64) -> TokenCommand {
        TokenCommand::PollDevice(PollDevice {
            device_code_hash: started().device_code_hash,
            device,
            pace,
            token: NewAccessToken {
                jti: Uuid::from_u128(1),
                opaque_token_hash: HashKey::for_tests().hash("at"),
                kid: Some("k1".into()),
                resources: Vec::new(),
                dpop: None,
            },
            refresh: NewRefreshToken {
                id: Uuid::from_u128(2),
                token_hash: HashKey::for_tests().hash("rt"),
                ttl_secs: 3600,
                family_ttl_secs: 7200,
            },
            id_token: NewIdToken::default(),
            family_id: Uuid::from_u128(3),
            now,
        })
    }

    #[test]
    fn user_codes_are_read_the_way_people_type_them() {
        assert_eq!(
            normalize_user_code("bcdf-ghjk").as_deref(),
            Some("BCDFGHJK")
        );
        assert_eq!(
            normalize_user_code("BCDF GHJK").as_deref(),
            Some("BCDFGHJK")
        );
        assert_eq!(
            normalize_user_code("ABCD-EFGH"),
            None,
            "vowels are not in the alphabet"
        );
        assert_eq!(normalize_user_code("BCDF-GHJ"), None);
    }

    #[test]
    fn starting_records_the_hashes_scopes_and_expiry() {
        scenario()
            .given(vec![registered()])
            .when(TokenCommand::StartDevice(StartDevice {
                device_code_hash: started().device_code_hash,
                user_code_hash: started().user_code_hash,
                scopes: Some(Scope::parse_list("read").unwrap()),
                resources: Vec::new(),
                ttl_secs: 600,
                interval_secs: 5,
                now: NOW,
            }))
            .then(vec![Event::DeviceAuthorizationStarted(started())]);
    }

    #[test]
    fn approving_records_the_consent_and_the_approval_once() {
        let answer = |device, approve| {
            TokenCommand::DecideDevice(DecideDevice {
                device,
                user_id: user(),
                approve,
                existing_consent: ConsentView::default(),
                oidc: None,
                now: NOW + 10,
            })
        };
        scenario()
            .given(vec![registered()])
            .when(answer(Some(view(None, false)), true))
            .then(vec![
                Event::AuthorizationGranted(crate::event::AuthorizationGranted {
                    client_id: id(),
                    user_id: user(),
                    scopes: started().scopes,
                }),
                Event::DeviceAuthorizationApproved(approved()),
            ]);
        scenario()
            .given(vec![registered()])
            .when(answer(Some(view(None, false)), false))
            .then(vec![Event::DeviceAuthorizationDenied(
                DeviceAuthorizationDenied {
                    client_id: id(),
                    device_code_hash: started().device_code_hash,
                    user_id: user(),
                },
            )]);
        scenario()
            .given(vec![registered()])
            .when(answer(
                Some(view(Some(DeviceDecision::Denied), false)),
                true,
            ))
            .then_err(TokenError::InvalidGrant(GrantRejected::DeviceAlreadyDecided).into());
    }

    #[test]
    fn polling_answers_each_state_as_rfc_8628_says() {
        let pending = Some(view(None, false));
        let when = |device, pace, now| {
            scenario()
                .given(vec![registered()])
                .when(poll_cmd(device, pace, now))
        };
        when(pending.clone(), None, NOW + 5).then_err(TokenError::AuthorizationPending.into());
        let pace = Some(Pace {
            last_poll_at: NOW + 5,
            interval_secs: 5,
        });
        when(pending.clone(), pace, NOW + 7).then_err(TokenError::SlowDown.into());
        when(pending.clone(), pace, NOW + 10).then_err(TokenError::AuthorizationPending.into());
        when(pending, None, NOW + 600).then_err(TokenError::DeviceCodeExpired.into());
        when(
            Some(view(Some(DeviceDecision::Denied), false)),
            None,
            NOW + 20,
        )
        .then_err(TokenError::DeviceDenied.into());
        when(None, None, NOW)
            .then_err(TokenError::InvalidGrant(GrantRejected::UnknownDeviceCode).into());
        let approved_view = Some(view(
            Some(DeviceDecision::Approved(Box::new(approved()))),
            false,
        ));
        when(
            Some(view(
                Some(DeviceDecision::Approved(Box::new(approved()))),
                true,
            )),
            None,
            NOW + 20,
        )
        .then_err(TokenError::InvalidGrant(GrantRejected::DeviceCodeUsed).into());
        // The approving user's account locked since: nothing.
        let mut locked = view(Some(DeviceDecision::Approved(Box::new(approved()))), false);
        locked.user_locked = true;
        when(Some(locked), None, NOW + 20)
            .then_err(TokenError::InvalidGrant(GrantRejected::AccountLocked).into());
        let events = decide_token(
            &{
                let mut s = ClientState::Unregistered;
                client::evolve(&mut s, &registered());
                s
            },
            &poll_cmd(approved_view, None, NOW + 20),
        )
        .unwrap();
        let types: Vec<&str> = events.iter().map(Event::type_name).collect();
        assert_eq!(
            types,
            [
                "DeviceCodeRedeemed",
                "AccessTokenIssued",
                "RefreshTokenIssued"
            ]
        );
    }

    #[test]
    fn slow_down_makes_the_interval_grow() {
        let first = next_pace(None, 5, false, NOW);
        assert_eq!(first.interval_secs, 5);
        let slowed = next_pace(Some(first), 5, true, NOW + 1);
        assert_eq!(slowed.interval_secs, 10);
        assert_eq!(
            next_pace(Some(slowed), 5, false, NOW + 12).interval_secs,
            10
        );
    }
}
