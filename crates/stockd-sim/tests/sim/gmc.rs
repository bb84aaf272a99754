use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use stockd_sim::gmc::{gmc_stats, start, Config, GOOGLE_TOKEN_URL, JWT_GRANT_TYPE, SCOPE};
use stockd_sim::{RunningSim, SimError};

use crate::common_support::any_addr;

const EMAIL: &str = "sync@test-project.iam.gserviceaccount.com";
const ACCOUNT: u64 = 4242;
const DS: &str = "accounts/4242/dataSources/77";

// Throwaway RSA-2048 key pairs made with openssl for these tests only.
pub(crate) const KEY_A_PRIVATE: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC/YzoynuhC45/E\n\
Eo6NOCtSRHqVMIaBNL94lhrJajeLiM4QTd406t6a/WGanBqNUajJ9H7Lfe1/AjCe\n\
WfrEagMg7SluVs44y+XCYftMmR3V/PFU/8lC/cEtkmTAWLlu2q61JBR0afIKQ732\n\
e1O/t3SzPZRRPZEnXJ7UioX0ObpQ9fsyQg1q2E21f/XadRu+aABtc7/xxMpMt8j3\n\
jnTnHa+DMlo+W3+iGYJKn2LAT7/gGe33gLyooAN+Uin9OrjTBZy/OI5H70PAWeu9\n\
K+02EUXKyEYfD8uidXy5J27j4FubKBsodYq4+k+VEHPpdTCtW23VCk2hnrYOugkS\n\
96b8R8snAgMBAAECggEAOOUMJ4FC5aOaWqTzmLqycjXmRRSUX7OpGfVxiB/Z3FKy\n\
g3lKjeumemfJzLcMU6eLaGIVEXRhlmi1wFVabWpgfLjUILeQfaTrrBIJrTc1fehA\n\
a/bQQ2iBNYV4CxA1K+W5myLbK9JVAEUsIyp9dphYinJLda06SfvIQcHeWYCRyUAa\n\
pImi69Ikbj0S123GiIqgbKdJHiT1iC+3rpEYCsOC1lHT6zl3TSkEWk+SHQdEVvFh\n\
JHLk1PAVFIPP6NVm0cOEeksuH43B6TRIgAstywqVr2oW/6K6eDcv9kTTMX4gcAjb\n\
p80MjM6lbOdX2EKjiaExEZVys4ASYLCeVQ2MFEAMHQKBgQDyTpZ2o+Xc39UKmGx7\n\
x8l090Nu/WKD49c6ULmMtjV8cBF0ZvY14aT7jU4Xz94XhKbCEMeOEO9XNDHQURte\n\
wHoXVgui9uVySFHiH/My46ptc5BEPtCZatxxxtx5mUMPWRdbo6kkMqV50CdoU8yR\n\
pCasthr5BQz3pGbn/M/dUm/U4wKBgQDKM/97WRN8C2xfHP8//cCSPPzRJ+r+kJia\n\
teFB1X9474y/bremNa+hPsK7OB4fMU6aDK8xIXouYywwvvRecHccjl9q1KFjeXYK\n\
/VM/GUHrMKY2sHDI/iksTYvba9QB1msugO6+a4lOeqcV9Q/U/ejDXuggROObi38n\n\
jkUMfVSH7QKBgDMwQP8dTtEjhCkx3DEmGrwYBGntI6PDPVO3fAtq7s+0CSvzGG53\n\
ldgCmQ3UvxFu15/F1bKAh19/yko86DBTLzfA2MJ7sCs9dfb0UvdcO0PWFxMjxgOz\n\
HJD4ttkFdLJIWvPkFjZscKLUQ475rQzThcwUyIv08jFazNaThQI3iSKLAoGAT44f\n\
0a8dTGvOKqnk/49eCet26O/UtG29rPksdFOEwNc3QEZWeU2cGUvxH+oXZ9xleZTO\n\
BP2P7dpVE6S9zr5fDtwxTH32NYYfXHmJHEVauyc77j6DUYE2P9kO0rjdBBARwY02\n\
4bK7piX5wVjW7s0rnFql57RS/Oroj26ZWi2haY0CgYEAiHsAkd5f81VbPK0D3HpX\n\
7iH2tQPrUd0LP5++rt0Nzub7H7CPMjgS2i4bveIZoCD+qPgR6FoCsFGd1nRd3zfb\n\
YzKRpJSZ7F8oRl0+QxwsSAmQFr+zzXIBmo31bLp1lkRsf62WvksDSNiyIhSPPLiB\n\
/iFsiPFgvKXAsBogeG3ngHE=\n\
-----END PRIVATE KEY-----\n\
";
const KEY_A_PUBLIC: &str = "\
-----BEGIN PUBLIC KEY-----\n\
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAv2M6Mp7oQuOfxBKOjTgr\n\
UkR6lTCGgTS/eJYayWo3i4jOEE3eNOremv1hmpwajVGoyfR+y33tfwIwnln6xGoD\n\
IO0pblbOOMvlwmH7TJkd1fzxVP/JQv3BLZJkwFi5btqutSQUdGnyCkO99ntTv7d0\n\
sz2UUT2RJ1ye1IqF9Dm6UPX7MkINathNtX/12nUbvmgAbXO/8cTKTLfI94505x2v\n\
gzJaPlt/ohmCSp9iwE+/4Bnt94C8qKADflIp/Tq40wWcvziOR+9DwFnrvSvtNhFF\n\
yshGHw/LonV8uSdu4+BbmygbKHWKuPpPlRBz6XUwrVtt1QpNoZ62DroJEvem/EfL\n\
JwIDAQAB\n\
-----END PUBLIC KEY-----\n\
";
const KEY_B_PRIVATE: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDz5ngGcsAba7Ap\n\
tWJAYM6UZDRMVlLZqXjevUGLeWuBhKouztShssxjnXLFIwZ7kzcSvMNPCCTHz2d3\n\
VIHV/7Adc1/T3lt3y2PogWFNgSNI4QsfJd9p0vovybsc0aaDRQrj7l2tAIAm8t3Y\n\
PINPU8iZ4PjXyz44keKz4NFwN3kllEpiPo07WYWOT+gRMPxMCD8qzabj6j6JPdil\n\
G/6B7ef1KOHqb9HM59WqY+qjjdNXYtIFFBaH7cuobVESy0d67m544600DN3DkFId\n\
DrjkUIyzsnHtPiOdidpt5FSH0agBmX3DBXunQEBFmW/WKozTP8/OXvwV+ZhoC5tm\n\
GbhdiYzHAgMBAAECggEAC/DOEn6+sfj5NGmJaF507qXjO5OEVdyqqrj4QwRMQ5iD\n\
nmwI0+vFfuD/8+/NivI/oX61TyK2bkPUrG5qNthgPmjeGajKsJg4CXOAGIPIfvJp\n\
kXpQsEUgc4N8UiJfdRDFwjfyxRv/qih8vO/le9Y9vW7ar/Hm120o/KZ2inhkyXab\n\
H+1eqwoeDmR47XlIxGz+H86IxSJ+N7xb62Wr2PWJY322yjqu6KHykuh3GLkFIB7i\n\
epl+EBKh6Rkr0/sOZ8Xy/NtDBGj1rOQkRZTH+Qx16yee1xyblG28W2HzqEZUHl5U\n\
1Jt2imceuJfUVaLSZeF8oh63yHh0DY4gDlDCBSFeJQKBgQD79++jO0jOcJ+3xFEG\n\
EO3+gLxSVcsvzOhV2xwSzPXTG8p/eeJmFbbIq6I+Z4mMkncYqxHBnjyv8opR7WqX\n\
OfMAYUPds7gl4OtjcJ4aY9oRWMFBXzgB9I7Ko5JgVwT0FKOyy03nUrP4rq54IRZN\n\
FhqulnAXehu+Thq2tQ5XQU1oVQKBgQD3zXw54BZfY2F9+m/XIvxeM7CAWGcoaL/5\n\
xcOAa+R3Ob6WJZf7TxRj743FMW9722FdE/UdIsO9dl5vRqiWLT8HlIM3c5ESN6IW\n\
Ow6OKKlPOSYW7J3pucpyrZyXqIXR1Ja/15Q4tFIasRWUiJWz0HaDMJCNJWcBed82\n\
HrpeII1sqwKBgQDO6anWh8agEIh4ZjSLILfv+VOs4Vs7468fYhFJtxpfxECkMjki\n\
z84MODXBvVCNKXG3xjOMph779dZ0tNyFV0cgFr+efglIwc1LGZ4b2cen2xTIVCMw\n\
J95itbRsfMlKjvBm0OEmhxnXq8sGR1WC9BXxLQTboqDJxGXXiBNAwBWLCQKBgQC3\n\
s5WMMhtjy4DSq32Nt1nvW9JU0zRmOIFY4Mr1wQY1fJFVLblljFJJY6VtsiA7aX7c\n\
SZdEailBoyaOx4rjCdfX/rjnurypDKUUZeN8b5hUKsGZ7P+D7T+vlBSqOTw7OaYn\n\
weEXyFW1g+HDox2Xl8rDppUCjd+2sGpQ7KascOVm0QKBgD+T8LQThPsspJv5LsxX\n\
w2DJSGm2cneSGrtU7IB30sSwztpABO2/XumZylLQZJ/w5+8m1tGmoi61/1sUT1DJ\n\
D5YHCkFuw/vK7RGDykk6PDok+ClsAR4TN7wDOEPrcWDLENPSOL2lBQrywkiPhbaG\n\
O4lWCsxkWyPXMQUFGdd7rJnd\n\
-----END PRIVATE KEY-----\n\
";

fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// An RS256 JWT signed with ring, independent of the simulator.
fn sign_jwt(private_pem: &str, header: &Value, claims: &Value) -> String {
    let key = ring::signature::RsaKeyPair::from_pkcs8(&pem_der(private_pem)).unwrap();
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let mut sig = vec![0u8; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    format!("{input}.{}", b64url(&sig))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(aud: &str) -> Value {
    json!({"iss": EMAIL, "scope": SCOPE, "aud": aud, "iat": now(), "exp": now() + 3600})
}

fn rs256() -> Value {
    json!({"alg": "RS256", "typ": "JWT", "kid": "k1"})
}

fn base_config() -> Config {
    Config {
        account_id: ACCOUNT,
        data_source_id: 77,
        service_account_email: EMAIL.into(),
        public_key: Some(KEY_A_PUBLIC.as_bytes().to_vec()),
        processing_delay: Duration::from_millis(300),
        inventory_delay: Duration::from_millis(300),
        ..Config::default()
    }
}

async fn sim_with(cfg: Config) -> RunningSim {
    start(cfg, any_addr()).await.expect("start")
}

async fn token_request(sim: &RunningSim, form: &[(&str, &str)]) -> (u16, Value) {
    let body: String = form
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let r = reqwest::Client::new()
        .post(format!("{}/token", sim.base_url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn token(sim: &RunningSim) -> String {
    let jwt = sign_jwt(KEY_A_PRIVATE, &rs256(), &claims(GOOGLE_TOKEN_URL));
    let (s, v) = token_request(sim, &[("grant_type", JWT_GRANT_TYPE), ("assertion", &jwt)]).await;
    assert_eq!(s, 200, "{v}");
    v["access_token"].as_str().unwrap().to_string()
}

async fn call(
    sim: &RunningSim,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method.parse().unwrap(), format!("{}{path}", sim.base_url))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

fn inputs_path(rest: &str) -> String {
    format!("/products/v1/accounts/{ACCOUNT}/productInputs{rest}")
}

fn product_path(id: &str) -> String {
    format!("/products/v1/accounts/{ACCOUNT}/products/{id}")
}

fn ds_query() -> String {
    format!("dataSource={}", urlencode(DS))
}

/// Poll `GET products/{id}` until it answers 200, within a deadline.
async fn wait_product(sim: &RunningSim, tok: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (s, v) = call(sim, tok, "GET", &product_path(id), None).await;
        if s == 200 {
            return v;
        }
        assert_eq!(s, 404, "{v}");
        assert!(Instant::now() < deadline, "product {id} never processed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn product_input(offer: &str, attrs: Value) -> Value {
    json!({"offerId": offer, "contentLanguage": "nl", "feedLabel": "NL", "productAttributes": attrs})
}

#[tokio::test]
async fn jwt_grant_accepted_and_rejected() {
    let sim = sim_with(base_config()).await;
    let ok = sign_jwt(KEY_A_PRIVATE, &rs256(), &claims(GOOGLE_TOKEN_URL));
    let (s, v) = token_request(&sim, &[("grant_type", JWT_GRANT_TYPE), ("assertion", &ok)]).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3600);
    assert!(v["access_token"].as_str().unwrap().len() > 10);
    // The sim's own token URL is accepted as aud too.
    let own = sign_jwt(
        KEY_A_PRIVATE,
        &rs256(),
        &claims(&format!("{}/token", sim.base_url)),
    );
    let (s, _) = token_request(&sim, &[("grant_type", JWT_GRANT_TYPE), ("assertion", &own)]).await;
    assert_eq!(s, 200);

    let mut expired = claims(GOOGLE_TOKEN_URL);
    expired["iat"] = json!(now() - 7200);
    expired["exp"] = json!(now() - 3600);
    let mut too_long = claims(GOOGLE_TOKEN_URL);
    too_long["exp"] = json!(now() + 7200);
    let mut wrong_iss = claims(GOOGLE_TOKEN_URL);
    wrong_iss["iss"] = json!("other@x.iam.gserviceaccount.com");
    let mut wrong_scope = claims(GOOGLE_TOKEN_URL);
    wrong_scope["scope"] = json!("https://www.googleapis.com/auth/cloud-platform");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "signed by another key",
            sign_jwt(KEY_B_PRIVATE, &rs256(), &claims(GOOGLE_TOKEN_URL)),
            "invalid_grant",
        ),
        (
            "wrong aud",
            sign_jwt(
                KEY_A_PRIVATE,
                &rs256(),
                &claims("https://example.com/token"),
            ),
            "invalid_grant",
        ),
        (
            "expired",
            sign_jwt(KEY_A_PRIVATE, &rs256(), &expired),
            "invalid_grant",
        ),
        (
            "over an hour",
            sign_jwt(KEY_A_PRIVATE, &rs256(), &too_long),
            "invalid_grant",
        ),
        (
            "wrong iss",
            sign_jwt(KEY_A_PRIVATE, &rs256(), &wrong_iss),
            "invalid_grant",
        ),
        (
            "wrong scope",
            sign_jwt(KEY_A_PRIVATE, &rs256(), &wrong_scope),
            "invalid_scope",
        ),
        (
            "HS256 header",
            sign_jwt(
                KEY_A_PRIVATE,
                &json!({"alg": "HS256"}),
                &claims(GOOGLE_TOKEN_URL),
            ),
            "invalid_grant",
        ),
        ("garbage", "a.b".to_string(), "invalid_grant"),
    ];
    for (what, jwt, error) in cases {
        let (s, v) =
            token_request(&sim, &[("grant_type", JWT_GRANT_TYPE), ("assertion", &jwt)]).await;
        assert_eq!(s, 400, "{what}: {v}");
        assert_eq!(v["error"], error, "{what}: {v}");
    }
    // A tampered payload breaks the signature.
    let mut parts: Vec<String> = ok.split('.').map(str::to_string).collect();
    let mut c = claims(GOOGLE_TOKEN_URL);
    c["scope"] = json!(format!(
        "{SCOPE} https://www.googleapis.com/auth/cloud-platform"
    ));
    parts[1] = b64url(c.to_string().as_bytes());
    let (s, v) = token_request(
        &sim,
        &[
            ("grant_type", JWT_GRANT_TYPE),
            ("assertion", &parts.join(".")),
        ],
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")));
    let (s, v) = token_request(
        &sim,
        &[("grant_type", "client_credentials"), ("assertion", &ok)],
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let stats = gmc_stats(&sim).unwrap();
    assert_eq!(stats.tokens_issued, 2);
    assert_eq!(stats.token_rejections, 10);
    sim.shutdown().await;
}

#[tokio::test]
async fn public_key_as_der_and_bad_key_refused() {
    let der = pem_der(KEY_A_PUBLIC);
    let sim = sim_with(Config {
        public_key: Some(der),
        ..base_config()
    })
    .await;
    let _ = token(&sim).await;
    sim.shutdown().await;
    let err = start(
        Config {
            public_key: Some(b"not a key".to_vec()),
            ..base_config()
        },
        any_addr(),
    )
    .await;
    assert!(err.is_err());
}

/// Google's client libraries sign their own JWT and send it as the bearer
/// token, without the token endpoint: with `scope`, or with `aud` = the API.
#[tokio::test]
async fn self_signed_jwt_as_bearer() {
    let sim = sim_with(base_config()).await;
    let path = product_path("nl~NL~x");
    let scoped =
        json!({"iss": EMAIL, "sub": EMAIL, "scope": SCOPE, "iat": now(), "exp": now() + 3600});
    let jwt = sign_jwt(KEY_A_PRIVATE, &rs256(), &scoped);
    let (s, v) = call(&sim, &jwt, "GET", &path, None).await;
    assert_eq!(s, 404, "accepted, the product does not exist: {v}");
    let audience = json!({"iss": EMAIL, "sub": EMAIL, "aud": "https://merchantapi.googleapis.com/",
                          "iat": now(), "exp": now() + 3600});
    let jwt = sign_jwt(KEY_A_PRIVATE, &rs256(), &audience);
    assert_eq!(call(&sim, &jwt, "GET", &path, None).await.0, 404);
    // Refused: another account, a subject that is not the issuer, neither
    // scope nor audience, expired, too long-lived, signed by another key.
    let refused = [
        (
            KEY_A_PRIVATE,
            json!({"iss": "x@y.iam.gserviceaccount.com", "scope": SCOPE, "iat": now(), "exp": now() + 60}),
        ),
        (
            KEY_A_PRIVATE,
            json!({"iss": EMAIL, "sub": "x@y.iam.gserviceaccount.com", "scope": SCOPE, "iat": now(), "exp": now() + 60}),
        ),
        (
            KEY_A_PRIVATE,
            json!({"iss": EMAIL, "sub": EMAIL, "iat": now(), "exp": now() + 60}),
        ),
        (
            KEY_A_PRIVATE,
            json!({"iss": EMAIL, "scope": SCOPE, "iat": now() - 7200, "exp": now() - 3600}),
        ),
        (
            KEY_A_PRIVATE,
            json!({"iss": EMAIL, "scope": SCOPE, "iat": now(), "exp": now() + 7200}),
        ),
        (KEY_B_PRIVATE, scoped.clone()),
    ];
    for (key, claims) in refused {
        let jwt = sign_jwt(key, &rs256(), &claims);
        let (s, v) = call(&sim, &jwt, "GET", &path, None).await;
        assert_eq!(
            (s, v["error"]["status"].as_str()),
            (401, Some("UNAUTHENTICATED")),
            "{claims}"
        );
    }
    assert_eq!(gmc_stats(&sim).unwrap().tokens_issued, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn bearer_auth_and_token_expiry() {
    let sim = sim_with(Config {
        token_ttl_secs: 1,
        ..base_config()
    })
    .await;
    let path = product_path("nl~NL~x");
    let r = reqwest::Client::new()
        .get(format!("{}{path}", sim.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], 401);
    assert_eq!(v["error"]["status"], "UNAUTHENTICATED");
    assert!(v["error"]["message"].as_str().unwrap().contains("missing"));
    let (s, v) = call(&sim, "ya29.forged", "GET", &path, None).await;
    assert_eq!(
        (s, v["error"]["status"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );

    let tok = token(&sim).await;
    let (s, _) = call(&sim, &tok, "GET", &path, None).await;
    assert_eq!(s, 404, "a valid token reaches the API");
    // The token expires after token_ttl_secs.
    let issued = Instant::now();
    let deadline = issued + Duration::from_secs(5);
    loop {
        let (s, v) = call(&sim, &tok, "GET", &path, None).await;
        if s == 401 {
            assert_eq!(v["error"]["status"], "UNAUTHENTICATED");
            break;
        }
        assert_eq!(s, 404);
        assert!(Instant::now() < deadline, "token never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(issued.elapsed() >= Duration::from_millis(900));
    assert!(gmc_stats(&sim).unwrap().auth_failures >= 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn insert_requires_data_source_and_processing_is_delayed() {
    let sim = sim_with(base_config()).await;
    let tok = token(&sim).await;
    let body = product_input(
        "sku1",
        json!({"availability": "IN_STOCK", "sellOnGoogleQuantity": 12,
               "price": {"amountMicros": 19990000, "currencyCode": "EUR"}}),
    );
    let (s, v) = call(
        &sim,
        &tok,
        "POST",
        &inputs_path(":insert"),
        Some(body.clone()),
    )
    .await;
    assert_eq!(
        (s, v["error"]["status"].as_str()),
        (400, Some("INVALID_ARGUMENT")),
        "{v}"
    );
    let (s, v) = call(
        &sim,
        &tok,
        "POST",
        &format!(
            "{}?dataSource=accounts/{ACCOUNT}/dataSources/999",
            inputs_path(":insert")
        ),
        Some(body.clone()),
    )
    .await;
    assert_eq!(s, 404, "{v}");
    let mut missing = body.clone();
    missing.as_object_mut().unwrap().remove("feedLabel");
    let (s, _) = call(
        &sim,
        &tok,
        "POST",
        &format!("{}?{}", inputs_path(":insert"), ds_query()),
        Some(missing),
    )
    .await;
    assert_eq!(s, 400);

    let t0 = Instant::now();
    let (s, v) = call(
        &sim,
        &tok,
        "POST",
        &format!("{}?{}", inputs_path(":insert"), ds_query()),
        Some(body),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["name"],
        format!("accounts/{ACCOUNT}/productInputs/nl~NL~sku1")
    );
    assert_eq!(
        v["base64EncodedName"],
        format!("accounts/{ACCOUNT}/productInputs/{}", b64url(b"nl~NL~sku1"))
    );
    assert_eq!(
        v["product"],
        format!("accounts/{ACCOUNT}/products/nl~NL~sku1")
    );
    // int64 fields are emitted as JSON strings.
    assert_eq!(v["productAttributes"]["sellOnGoogleQuantity"], "12");
    assert_eq!(v["productAttributes"]["price"]["amountMicros"], "19990000");
    // Not visible before the processing delay.
    let (s, v) = call(&sim, &tok, "GET", &product_path("nl~NL~sku1"), None).await;
    assert_eq!((s, v["error"]["status"].as_str()), (404, Some("NOT_FOUND")));
    let p = wait_product(&sim, &tok, "nl~NL~sku1").await;
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert_eq!(p["name"], format!("accounts/{ACCOUNT}/products/nl~NL~sku1"));
    assert_eq!(p["dataSource"], DS);
    assert_eq!(p["offerId"], "sku1");
    assert_eq!(p["productAttributes"]["availability"], "IN_STOCK");
    assert_eq!(p["productAttributes"]["sellOnGoogleQuantity"], "12");
    // The same product through its base64url name.
    let p2 = wait_product(&sim, &tok, &b64url(b"nl~NL~sku1")).await;
    assert_eq!(p, p2);
    // A non-integer int64 is refused.
    let bad = product_input("sku2", json!({"sellOnGoogleQuantity": "twelve"}));
    let (s, _) = call(
        &sim,
        &tok,
        "POST",
        &format!("{}?{}", inputs_path(":insert"), ds_query()),
        Some(bad),
    )
    .await;
    assert_eq!(s, 400);
    let listed = sim.listings();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].availability, "in_stock");
    assert_eq!(listed[0].quantity, 0, "no local inventory");
    sim.shutdown().await;
}

#[tokio::test]
async fn patch_update_mask_and_name_decoding() {
    let sim = sim_with(Config {
        updates_per_product_per_day: 0,
        ..base_config()
    })
    .await;
    let tok = token(&sim).await;
    // An offer id with '/' must use the base64url form.
    let offer = "sku/1~b";
    let (s, v) = call(
        &sim,
        &tok,
        "POST",
        &format!("{}?{}", inputs_path(":insert"), ds_query()),
        Some(product_input(
            offer,
            json!({"availability": "IN_STOCK", "sellOnGoogleQuantity": "4", "title": "T"}),
        )),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let enc = b64url(format!("nl~NL~{offer}").as_bytes());
    assert_eq!(
        v["base64EncodedName"],
        format!("accounts/{ACCOUNT}/productInputs/{enc}")
    );
    let patch = |id: &str, q: &str| format!("{}?{q}", inputs_path(&format!("/{id}")));

    // dataSource is required.
    let (s, v) = call(
        &sim,
        &tok,
        "PATCH",
        &patch(&enc, "updateMask=productAttributes.availability"),
        Some(json!({"productAttributes": {"availability": "OUT_OF_STOCK"}})),
    )
    .await;
    assert_eq!(
        (s, v["error"]["status"].as_str()),
        (400, Some("INVALID_ARGUMENT"))
    );
    // Unknown product: 404.
    let (s, _) = call(
        &sim,
        &tok,
        "PATCH",
        &patch("nl~NL~nope", &ds_query()),
        Some(json!({"productAttributes": {"availability": "OUT_OF_STOCK"}})),
    )
    .await;
    assert_eq!(s, 404);
    // The plain form cannot carry '/' in the offer id (§3.3): the encoded form is mandatory.
    let (s, v) = call(
        &sim,
        &tok,
        "PATCH",
        &patch("nl~NL~sku%2F1~b", &ds_query()),
        Some(json!({"productAttributes": {"availability": "OUT_OF_STOCK"}})),
    )
    .await;
    assert_eq!(
        (s, v["error"]["status"].as_str()),
        (400, Some("INVALID_ARGUMENT")),
        "{v}"
    );
    // Masked field written, unmasked one in the body ignored.
    let (s, v) = call(
        &sim,
        &tok,
        "PATCH",
        &patch(
            &enc,
            &format!("updateMask=productAttributes.availability&{}", ds_query()),
        ),
        Some(json!({"productAttributes": {"availability": "BACKORDER", "title": "ignored"}})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["productAttributes"]["availability"], "BACKORDER");
    assert_eq!(v["productAttributes"]["title"], "T");
    assert_eq!(v["productAttributes"]["sellOnGoogleQuantity"], "4");
    // Masked but absent: deleted (snake_case mask paths accepted).
    let (s, v) = call(
        &sim,
        &tok,
        "PATCH",
        &patch(
            &enc,
            &format!(
                "updateMask=product_attributes.sell_on_google_quantity&{}",
                ds_query()
            ),
        ),
        Some(json!({"productAttributes": {}})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        v["productAttributes"].get("sellOnGoogleQuantity").is_none(),
        "{v}"
    );
    // No mask: every populated field.
    let (s, v) = call(
        &sim,
        &tok,
        "PATCH",
        &patch(&enc, &ds_query()),
        Some(json!({"productAttributes": {"availability": "PREORDER",
            "availabilityDate": "2026-12-01T00:00:00Z", "sellOnGoogleQuantity": 7}})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["productAttributes"]["availability"], "PREORDER");
    assert_eq!(
        v["productAttributes"]["availabilityDate"],
        "2026-12-01T00:00:00Z"
    );
    assert_eq!(v["productAttributes"]["sellOnGoogleQuantity"], "7");
    assert_eq!(v["productAttributes"]["title"], "T");
    // Wildcard, unknown paths, bad enum values and immutable fields are refused.
    for (q, body) in [
        ("updateMask=*", json!({"productAttributes": {}})),
        ("updateMask=availability", json!({"productAttributes": {}})),
        (
            "",
            json!({"productAttributes": {"availability": "in stock"}}),
        ),
        (
            "",
            json!({"productAttributes": {"availabilityDate": "tomorrow"}}),
        ),
        ("", json!({"offerId": "other"})),
    ] {
        let q = if q.is_empty() {
            ds_query()
        } else {
            format!("{q}&{}", ds_query())
        };
        let (s, v) = call(&sim, &tok, "PATCH", &patch(&enc, &q), Some(body.clone())).await;
        assert_eq!(s, 400, "{q} {body}: {v}");
    }
    let p = wait_product(&sim, &tok, &enc).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut p = p;
    while p["productAttributes"]["availability"] != "PREORDER" {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
        p = wait_product(&sim, &tok, &enc).await;
    }
    assert_eq!(p["offerId"], offer);
    let l = sim.listings();
    assert_eq!(l[0].sku, offer);
    assert_eq!(l[0].availability, "backorder");
    // versionNumber: an older version is refused with ABORTED.
    let insert = format!("{}?{}", inputs_path(":insert"), ds_query());
    let mut v5 = product_input("ver", json!({"availability": "IN_STOCK"}));
    v5["versionNumber"] = json!(5);
    let (s, v) = call(&sim, &tok, "POST", &insert, Some(v5)).await;
    assert_eq!((s, v["versionNumber"].as_str()), (200, Some("5")), "{v}");
    let mut v3 = product_input("ver", json!({"availability": "OUT_OF_STOCK"}));
    v3["versionNumber"] = json!("3");
    let (s, v) = call(&sim, &tok, "POST", &insert, Some(v3)).await;
    assert_eq!(
        (s, v["error"]["status"].as_str()),
        (409, Some("ABORTED")),
        "{v}"
    );
    // Delete, then the processed product disappears after the delay.
    let (s, _) = call(&sim, &tok, "DELETE", &patch(&enc, &ds_query()), None).await;
    assert_eq!(s, 200);
    let (s, _) = call(&sim, &tok, "DELETE", &patch(&enc, &ds_query()), None).await;
    assert_eq!(s, 404);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (s, _) = call(&sim, &tok, "GET", &product_path(&enc), None).await;
        if s == 404 {
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn per_product_daily_update_budget() {
    let sim = sim_with(base_config()).await;
    sim.add_listings(&[("A".into(), 3), ("B".into(), 3)]);
    let tok = token(&sim).await;
    let patch = |offer: &str| {
        format!(
            "{}?updateMask=productAttributes.availability&{}",
            inputs_path(&format!("/nl~NL~{offer}")),
            ds_query()
        )
    };
    let body = json!({"productAttributes": {"availability": "OUT_OF_STOCK"}});
    for _ in 0..2 {
        let (s, v) = call(&sim, &tok, "PATCH", &patch("A"), Some(body.clone())).await;
        assert_eq!(s, 200, "{v}");
    }
    let (s, v) = call(&sim, &tok, "PATCH", &patch("A"), Some(body.clone())).await;
    assert_eq!(s, 429, "{v}");
    assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("quota/daily_limit_exceeded"));
    // A re-insert of the same product counts as an update too.
    let (s, _) = call(
        &sim,
        &tok,
        "POST",
        &format!("{}?{}", inputs_path(":insert"), ds_query()),
        Some(product_input("A", json!({"availability": "IN_STOCK"}))),
    )
    .await;
    assert_eq!(s, 429);
    // Other products have their own budget.
    let (s, _) = call(&sim, &tok, "PATCH", &patch("B"), Some(body)).await;
    assert_eq!(s, 200);
    let st = sim.stats();
    assert_eq!(st.rate_limit_violations, 2);
    assert_eq!(st.updates_applied, 3);
    assert_eq!(gmc_stats(&sim).unwrap().product_budget_violations, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn request_rate_and_daily_quotas() {
    let sim = sim_with(Config {
        requests_per_minute: 3,
        ..base_config()
    })
    .await;
    let tok = token(&sim).await;
    let get = product_path("nl~NL~none");
    for _ in 0..3 {
        let (s, _) = call(&sim, &tok, "GET", &get, None).await;
        assert_eq!(s, 404);
    }
    let (s, v) = call(&sim, &tok, "GET", &get, None).await;
    assert_eq!(
        (s, v["error"]["status"].as_str()),
        (429, Some("RESOURCE_EXHAUSTED")),
        "{v}"
    );
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("quota/request_rate_too_high"));
    assert_eq!(
        v["error"]["details"][0]["reason"],
        "quota/request_rate_too_high"
    );
    // Quotas are per method: list is not charged to get.
    let (s, v) = call(
        &sim,
        &tok,
        "GET",
        &format!("/products/v1/accounts/{ACCOUNT}/products"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(sim.stats().rate_limit_violations, 1);
    // quotas.list reports usage and limits as int64 strings.
    let (s, v) = call(
        &sim,
        &tok,
        "GET",
        &format!("/quota/v1/accounts/{ACCOUNT}/quotas"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let groups = v["quotaGroups"].as_array().unwrap();
    let g = groups
        .iter()
        .find(|g| g["methodDetails"][0]["method"] == "products.get")
        .unwrap();
    assert_eq!(g["quotaUsage"], "3");
    assert_eq!(g["quotaMinuteLimit"], "3");
    assert_eq!(g["methodDetails"][0]["subapi"], "products");
    sim.shutdown().await;

    let sim = sim_with(Config {
        requests_per_day: 2,
        ..base_config()
    })
    .await;
    let tok = token(&sim).await;
    for _ in 0..2 {
        let (s, _) = call(&sim, &tok, "GET", &get, None).await;
        assert_eq!(s, 404);
    }
    let (s, v) = call(&sim, &tok, "GET", &get, None).await;
    assert_eq!(s, 429);
    assert_eq!(
        v["error"]["details"][0]["reason"],
        "quota/daily_limit_exceeded"
    );
    assert_eq!(sim.stats().rate_limit_violations, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn content_api_is_sunset_and_counted() {
    let sim = sim_with(base_config()).await;
    let tok = token(&sim).await;
    assert_eq!(gmc_stats(&sim).unwrap().content_api_requests, 0);
    let (s, v) = call(
        &sim,
        &tok,
        "POST",
        &format!("/content/v2.1/{ACCOUNT}/products/online:nl:NL:A/localinventory"),
        Some(json!({"storeCode": "s", "quantity": 1})),
    )
    .await;
    assert_eq!(s, 410, "{v}");
    assert_eq!(v["error"]["code"], 410);
    assert!(v["error"]["message"].as_str().unwrap().contains("sunset"));
    let (s, _) = call(
        &sim,
        &tok,
        "GET",
        &format!("/content/v2.1/{ACCOUNT}/products"),
        None,
    )
    .await;
    assert_eq!(s, 410);
    assert_eq!(gmc_stats(&sim).unwrap().content_api_requests, 2);
    // Also served to operators over HTTP.
    let v: Value = reqwest::get(format!("{}/_sim/gmc/stats", sim.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["content_api_requests"], 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn local_inventory_per_store() {
    let sim = sim_with(Config {
        store_code: Some("store-1".into()),
        ..base_config()
    })
    .await;
    let made = sim.add_listings(&[("A".into(), 5), ("Z".into(), 0)]);
    assert_eq!(made.len(), 2);
    assert_eq!(
        serde_json::Value::Object(made[0].external.clone()),
        json!({"offer_id": "A", "content_language": "nl", "feed_label": "NL", "store_code": "store-1"})
    );
    assert_eq!(
        (made[0].quantity, made[0].availability.as_str()),
        (5, "in_stock")
    );
    assert_eq!(
        (made[1].quantity, made[1].availability.as_str()),
        (0, "out_of_stock")
    );
    let tok = token(&sim).await;
    let base = format!("/inventories/v1/accounts/{ACCOUNT}/products");
    let insert = |id: &str| format!("{base}/{id}/localInventories:insert");
    let t0 = Instant::now();
    let (s, v) = call(
        &sim,
        &tok,
        "POST",
        &insert("nl~NL~A"),
        Some(json!({"storeCode": "store-1", "localInventoryAttributes":
            {"availability": "IN_STOCK", "quantity": 3, "pickupMethod": "BUY", "pickupSla": "SAME_DAY"}})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["localInventoryAttributes"]["quantity"], "3");
    assert_eq!(v["storeCode"], "store-1");
    assert_eq!(
        v["name"],
        format!("accounts/{ACCOUNT}/products/nl~NL~A/localInventories/store-1")
    );
    // Another store does not count for this listing's quantity.
    let (s, _) = call(
        &sim,
        &tok,
        "POST",
        &insert(&b64url(b"nl~NL~A")),
        Some(json!({"storeCode": "store-2", "localInventoryAttributes": {"quantity": "9"}})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        sim.listings()[0].quantity,
        5,
        "visible only after the delay"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while sim.listings()[0].quantity != 3 {
        assert!(Instant::now() < deadline, "local inventory never applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(t0.elapsed() >= Duration::from_millis(300));
    let (s, v) = call(
        &sim,
        &tok,
        "GET",
        &format!("{base}/nl~NL~A/localInventories"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["localInventories"].as_array().unwrap().len(), 2, "{v}");
    for (id, body) in [
        (
            "nl~NL~A",
            json!({"storeCode": "s", "localInventoryAttributes": {"quantity": -1}}),
        ),
        (
            "nl~NL~A",
            json!({"storeCode": "s", "localInventoryAttributes": {"pickupMethod": "BUY"}}),
        ),
        (
            "nl~NL~A",
            json!({"storeCode": "s", "localInventoryAttributes": {"availability": "BACKORDER"}}),
        ),
        (
            "nl~NL~A",
            json!({"localInventoryAttributes": {"quantity": 1}}),
        ),
    ] {
        let (s, v) = call(&sim, &tok, "POST", &insert(id), Some(body.clone())).await;
        assert_eq!(s, 400, "{body}: {v}");
    }
    // Only for products that exist.
    let (s, _) = call(
        &sim,
        &tok,
        "POST",
        &insert("nl~NL~missing"),
        Some(json!({"storeCode": "store-1", "localInventoryAttributes": {"quantity": 1}})),
    )
    .await;
    assert_eq!(s, 404);
    // Delete takes effect after the delay.
    let (s, _) = call(
        &sim,
        &tok,
        "DELETE",
        &format!("{base}/nl~NL~A/localInventories/store-1"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while sim.listings()[0].quantity != 0 {
        assert!(Instant::now() < deadline, "delete never applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn listings_no_orders_and_injected_faults() {
    let sim = sim_with(base_config()).await;
    let made = sim.add_listings(&[("A".into(), 2)]);
    assert_eq!(
        serde_json::Value::Object(made[0].external.clone()),
        json!({"offer_id": "A", "content_language": "nl", "feed_label": "NL"})
    );
    assert_eq!(made[0].quantity, 0, "no local inventory without a store");
    assert_eq!(
        sim.buy(&[("A".into(), 1)]).await,
        Err(SimError::BadRequest("no orders on this channel".into()))
    );
    let tok = token(&sim).await;
    // The listing is already processed.
    let p = wait_product(&sim, &tok, "nl~NL~A").await;
    assert_eq!(p["productAttributes"]["availability"], "IN_STOCK");
    // Wrong account.
    let (s, v) = call(
        &sim,
        &tok,
        "GET",
        "/products/v1/accounts/1/products/nl~NL~A",
        None,
    )
    .await;
    assert_eq!(
        (s, v["error"]["status"].as_str()),
        (403, Some("PERMISSION_DENIED"))
    );
    // Rejected SKUs fail permanently.
    sim.set_faults(stockd_sim::Faults {
        reject_skus: vec!["A".into()],
        ..Default::default()
    });
    let (s, _) = call(
        &sim,
        &tok,
        "PATCH",
        &format!("{}?{}", inputs_path("/nl~NL~A"), ds_query()),
        Some(json!({"productAttributes": {"availability": "OUT_OF_STOCK"}})),
    )
    .await;
    assert_eq!(s, 400);
    sim.set_faults(stockd_sim::Faults {
        throttle_storm_secs: 60.0,
        retry_after_secs: Some(2.0),
        ..Default::default()
    });
    let r = reqwest::Client::new()
        .get(format!("{}{}", sim.base_url, product_path("nl~NL~A")))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "2");
    sim.set_faults(stockd_sim::Faults {
        outage_secs: 60.0,
        ..Default::default()
    });
    let (s, v) = call(&sim, &tok, "GET", &product_path("nl~NL~A"), None).await;
    assert_eq!(
        (s, v["error"]["status"].as_str()),
        (503, Some("UNAVAILABLE"))
    );
    let st = sim.stats();
    assert_eq!(st.injected_faults, 3);
    assert_eq!(st.rate_limit_violations, 0);
    sim.shutdown().await;
}

fn spec(rel: &str) -> String {
    let path = format!("{}/../../specs/gmc/{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("spec file {path} missing: {e}"))
}

/// The routes and enum names the simulator serves are the ones the v1 protos declare.
#[test]
fn served_routes_and_enums_match_the_protos() {
    let inputs = spec("products_v1/productinputs.proto");
    for b in [
        r#"post: "/products/v1/{parent=accounts/*}/productInputs:insert""#,
        r#"patch: "/products/v1/{product_input.name=accounts/*/productInputs/*}""#,
        r#"delete: "/products/v1/{name=accounts/*/productInputs/*}""#,
    ] {
        assert!(inputs.contains(b), "{b}");
    }
    let products = spec("products_v1/products.proto");
    assert!(products.contains(r#"get: "/products/v1/{name=accounts/*/products/*}""#));
    assert!(products.contains(r#"get: "/products/v1/{parent=accounts/*}/products""#));
    let local = spec("inventories_v1/localinventory.proto");
    assert!(local.contains(
        r#"post: "/inventories/v1/{parent=accounts/*/products/*}/localInventories:insert""#
    ));
    let quota = spec("quota_v1/quota.proto");
    assert!(quota.contains(r#"get: "/quota/v1/{parent=accounts/*}/quotas""#));
    let common = spec("products_v1/products_common.proto");
    for (name, n) in [
        ("IN_STOCK", 1),
        ("OUT_OF_STOCK", 2),
        ("PREORDER", 3),
        ("LIMITED_AVAILABILITY", 4),
        ("BACKORDER", 5),
    ] {
        assert!(common.contains(&format!("{name} = {n};")), "{name}");
    }
    assert!(common.contains("optional int64 sell_on_google_quantity"));
    let inv = spec("inventories_v1/inventories_common.proto");
    assert!(inv.contains("optional int64 quantity = 5"));
    let yaml = spec("products_v1/merchantapi_v1.yaml");
    assert!(yaml.contains(SCOPE));
}

#[tokio::test]
async fn products_list_pages() {
    let sim = sim_with(base_config()).await;
    let tok = token(&sim).await;
    let list = format!("/products/v1/accounts/{ACCOUNT}/products");
    let (s, v) = call(&sim, &tok, "GET", &list, None).await;
    assert_eq!(
        (s, v),
        (200, json!({})),
        "empty repeated fields are left out"
    );
    sim.add_listings(&[("A".into(), 1), ("B".into(), 0), ("C".into(), 2)]);
    let (s, v) = call(&sim, &tok, "GET", &format!("{list}?pageSize=2"), None).await;
    assert_eq!(s, 200);
    let first: Vec<&str> = v["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offerId"].as_str().unwrap())
        .collect();
    assert_eq!(first, ["A", "B"]);
    let next = v["nextPageToken"].as_str().unwrap();
    let (s, v) = call(
        &sim,
        &tok,
        "GET",
        &format!("{list}?pageSize=2&pageToken={next}"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["products"].as_array().unwrap().len(), 1);
    assert_eq!(v["products"][0]["offerId"], "C");
    assert!(v.get("nextPageToken").is_none());
    let (s, _) = call(&sim, &tok, "GET", &format!("{list}?pageToken=bogus"), None).await;
    assert_eq!(s, 400);
    sim.shutdown().await;
}

/// Unknown paths and methods a path does not serve answer Google's 404; under the API
/// services the token is still checked first, so a call without one answers 401.
#[tokio::test]
async fn unknown_paths_and_methods_answer_not_found_after_the_token_check() {
    let sim = sim_with(base_config()).await;
    let tok = token(&sim).await;
    let not_found = |s: u16, v: &Value| {
        assert_eq!(s, 404, "{v}");
        assert_eq!(v["error"]["status"], "NOT_FOUND", "{v}");
        assert_eq!(
            v["error"]["message"],
            "The requested URL was not found on this server."
        );
    };
    for (method, path) in [
        ("GET", inputs_path(":insert")),
        ("PUT", product_path("online~nl~NL~sku")),
        ("POST", inputs_path("/online~nl~NL~sku")),
        (
            "GET",
            format!("/inventories/v1/accounts/{ACCOUNT}/products/online~nl~NL~sku/localInventories:insert"),
        ),
        ("POST", format!("/quota/v1/accounts/{ACCOUNT}/quotas")),
        ("GET", format!("/products/v1/accounts/{ACCOUNT}/nothing")),
        ("GET", "/elsewhere".to_string()),
    ] {
        let (s, v) = call(&sim, &tok, method, &path, None).await;
        not_found(s, &v);
    }
    let failures_before = gmc_stats(&sim).unwrap().auth_failures;
    let (s, v) = call(
        &sim,
        "ya29.forged",
        "GET",
        &format!("/products/v1/accounts/{ACCOUNT}/nothing"),
        None,
    )
    .await;
    assert_eq!(
        (s, v["error"]["status"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );
    assert_eq!(gmc_stats(&sim).unwrap().auth_failures, failures_before + 1);
    // Outside the API services there is no token check.
    let (s, v) = call(&sim, "ya29.forged", "GET", "/elsewhere", None).await;
    not_found(s, &v);
    // A percent-encoded product name reaches the handler decoded, like a plain one.
    let (s, v) = call(&sim, &tok, "GET", &product_path("nl%7ENL%7Ex"), None).await;
    assert_eq!(s, 404, "{v}");
    assert_eq!(v["error"]["message"], "Requested entity was not found.");
    let (s, v) = call(&sim, &tok, "GET", &product_path("bad%7Ename"), None).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["message"], "Invalid product name: bad~name");
    sim.shutdown().await;
}
