//! The caller's profile: name, phone, saved addresses and notification channels.

use super::validate;
use crate::dto::{ProfileDto, ProfilePatchDto, SavedAddressDto};
use crate::extract::{ApiJson, Caller};
use crate::precondition::{if_match, with_etag};
use crate::problem::{ApiResult, Problem};
use crate::EdgeState;
use agora_actors::account::{AccountCommand, ProfilePatch, ProfileView, SavedAddress};
use agora_actors::inbox::Channel;
use agora_actors::limits::{valid_text, MAX_ADDRESS_LABEL_LEN, MAX_SAVED_ADDRESSES};
use agora_actors::{Command, EntityKind, EntityRef, Reply};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use std::sync::Arc;

fn dto(p: ProfileView) -> ProfileDto {
    ProfileDto {
        user_id: p.user_id,
        email: p.email,
        name: p.name,
        role: p.role.name().into(),
        phone: p.phone,
        addresses: p
            .addresses
            .into_iter()
            .map(|a| SavedAddressDto {
                label: a.label,
                name: a.name,
                line1: a.line1,
                city: a.city,
                postal_code: a.postal_code,
                country: a.country,
            })
            .collect(),
        notification_channels: p.channels.iter().map(|c| c.name().to_string()).collect(),
        wallet_minor: p.wallet_minor,
    }
}

async fn ask(st: &EdgeState, user_id: String, cmd: AccountCommand) -> ApiResult<Response> {
    match st
        .client
        .ask(
            EntityRef::new(EntityKind::Account, user_id),
            Command::Account(cmd),
        )
        .await?
    {
        Reply::Profile(p) => {
            let etag = p.etag();
            Ok(with_etag(Json(dto(p)), &etag))
        }
        _ => Err(Problem::internal("unexpected reply to a profile command")),
    }
}

/// Checks a phone number: E.164, `+` and 8 to 15 digits.
pub fn phone(s: &str) -> Result<(), Problem> {
    let digits = s.strip_prefix('+').unwrap_or("");
    if !(8..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Problem::invalid("phone", "E.164: + and 8 to 15 digits"));
    }
    Ok(())
}

fn address(i: usize, a: SavedAddressDto) -> Result<SavedAddress, Problem> {
    let f = |name: &str| format!("addresses[{i}].{name}");
    if a.label.trim().is_empty() || !valid_text(&a.label, MAX_ADDRESS_LABEL_LEN) {
        return Err(Problem::invalid(
            &f("label"),
            format!("1..={MAX_ADDRESS_LABEL_LEN} printable characters"),
        ));
    }
    validate::name(&f("name"), &a.name)?;
    validate::name(&f("line1"), &a.line1)?;
    validate::name(&f("city"), &a.city)?;
    let postal_ok = !a.postal_code.trim().is_empty()
        && a.postal_code.len() <= 16
        && a.postal_code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b' ' || b == b'-');
    if !postal_ok {
        return Err(Problem::invalid(
            &f("postal_code"),
            "1..=16 letters, digits, spaces or dashes",
        ));
    }
    if a.country.len() != 2 || !a.country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Problem::invalid(
            &f("country"),
            "ISO 3166 alpha-2, two capital letters",
        ));
    }
    Ok(SavedAddress {
        label: a.label,
        name: a.name,
        line1: a.line1,
        city: a.city,
        postal_code: a.postal_code,
        country: a.country,
    })
}

fn channels(names: Vec<String>) -> Result<Vec<Channel>, Problem> {
    let bad = |why: &str| Problem::invalid("notification_channels", why.to_string());
    if names.is_empty() || names.len() > 3 {
        return Err(bad("1 to 3 distinct channels among email, sms, whatsapp"));
    }
    let mut out = Vec::new();
    for n in names {
        let c = match n.as_str() {
            "email" => Channel::Email,
            "sms" => Channel::Sms,
            "whatsapp" => Channel::WhatsApp,
            _ => return Err(bad("each one of email, sms, whatsapp")),
        };
        if out.contains(&c) {
            return Err(bad("each channel once"));
        }
        out.push(c);
    }
    Ok(out)
}

/// The caller's profile.
#[utoipa::path(get, path = "/api/v1/me", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = ProfileDto, headers(("ETag" = String, description = "the profile's version, for `If-Match` on an edit"))),
              (status = 401, description = "no or bad token")))]
pub async fn get_me(State(st): State<Arc<EdgeState>>, caller: Caller) -> ApiResult<Response> {
    ask(&st, caller.user_id, AccountCommand::GetProfile).await
}

/// Changes the caller's profile (absent fields keep their value) and answers the new one.
/// With `If-Match` (the `ETag` of a read), the change applies only if the profile is still
/// at that version (another device may have edited it).
#[utoipa::path(patch, path = "/api/v1/me", request_body = ProfilePatchDto, tag = "accounts", security(("bearer" = [])),
    params(("If-Match" = Option<String>, Header, description = "the `ETag` of the version read: the edit applies only if the profile is still at it (`*` or absent: any version)")),
    responses((status = 200, body = ProfileDto, headers(("ETag" = String, description = "the profile's new version"))),
        (status = 400, description = "If-Match is not a list of entity tags"),
        (status = 401, description = "no or bad token"),
        (status = 412, description = "`If-Match` names a version the profile is no longer at: read it again, then retry"),
        (status = 422, description = "invalid field (named by `field`), e.g. sms without a phone")))]
pub async fn patch_me(
    State(st): State<Arc<EdgeState>>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ProfilePatchDto>,
) -> ApiResult<Response> {
    let expected = if_match(&headers)?;
    let name = req
        .name
        .as_deref()
        .map(|n| validate::name("name", n))
        .transpose()?;
    if let Some(Some(p)) = &req.phone {
        phone(p)?;
    }
    let addresses = match req.addresses {
        Some(list) if list.len() > MAX_SAVED_ADDRESSES => {
            return Err(Problem::invalid(
                "addresses",
                format!("at most {MAX_SAVED_ADDRESSES}"),
            ))
        }
        Some(list) => Some(
            list.into_iter()
                .enumerate()
                .map(|(i, a)| address(i, a))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    let patch = ProfilePatch {
        name,
        phone: req.phone,
        addresses,
        channels: req.notification_channels.map(channels).transpose()?,
    };
    let cmd = match expected {
        Some(etags) => AccountCommand::UpdateProfileIfMatch { patch, etags },
        None => AccountCommand::UpdateProfile(patch),
    };
    ask(&st, caller.user_id, cmd).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_and_channels() {
        assert!(phone("+919876543210").is_ok());
        assert!(phone("919876543210").is_err());
        assert!(phone("+12").is_err());
        assert!(phone("+1234567890123456").is_err());
        assert!(channels(vec!["email".into(), "sms".into()]).is_ok());
        assert!(channels(vec![]).is_err());
        assert!(channels(vec!["fax".into()]).is_err());
        assert!(channels(vec!["sms".into(), "sms".into()]).is_err());
    }
}
