//! The benchmark's event: a ~2 KiB `recording.completed`, made a distinct delivery per request
//! by a nonce in its padding (the ingress answers a replayed signature without storing it).

/// Replaced by each request's own 16 characters.
pub const NONCE_MARKER: &str = "@@nonce@@@@@@@@@";

/// A `recording.completed` of about `size` bytes whose padding starts with [`NONCE_MARKER`].
pub fn sample_event(size: usize) -> String {
    let mut event = serde_json::json!({
        "event": "recording.completed",
        "event_ts": 1_700_000_000_000_i64,
        "payload": {
            "account_id": "bench-account",
            "object": {
                "uuid": "4444AAAiAAAAAiAiAiiAii==", "id": 1234567890, "topic": "Benchmark",
                "host_email": "host@example.com", "start_time": "2026-11-23T10:00:00Z",
                "recording_files": [{
                    "id": "ed6c2f27-2ae7-42f4-b3d0-835b493e4fa8", "file_type": "MP4",
                    "file_size": 246560, "status": "completed",
                    "recording_type": "shared_screen_with_speaker_view",
                    "download_url": "https://zoom.example/rec/download/abc"
                }],
                "padding": NONCE_MARKER
            }
        },
        "download_token": "eyJhbGciOiJIUzUxMiJ9.eyJleHAiOjE3MDAwMDAwMDB9.sig"
    });
    let missing = size.saturating_sub(event.to_string().len());
    event["payload"]["object"]["padding"] =
        serde_json::Value::String(format!("{NONCE_MARKER}{}", "x".repeat(missing)));
    event.to_string()
}

fn lua_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A wrk script sending a distinct, freshly signed delivery on every request. It signs with
/// OpenSSL's HMAC through LuaJIT's FFI (wrk links libcrypto): about a microsecond a request,
/// the same for every server measured with it.
pub fn wrk_script(secret: &str, size: usize) -> String {
    let body = sample_event(size);
    let (prefix, suffix) = body.split_once(NONCE_MARKER).unwrap_or((body.as_str(), ""));
    format!(
        r#"local ffi = require("ffi")
ffi.cdef[[
typedef struct evp_md_st EVP_MD;
const EVP_MD *EVP_sha256(void);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len, const void *d, size_t n, unsigned char *md, unsigned int *md_len);
]]
local crypto = ffi.load("libcrypto.so.3")
local secret = {secret}
local prefix = {prefix}
local suffix = {suffix}
local digest = ffi.new("unsigned char[32]")
local digest_len = ffi.new("unsigned int[1]")
local hex = {{}}
for i = 0, 255 do hex[i] = string.format("%02x", i) end
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end
local counter = 0
local headers = {{ ["Content-Type"] = "application/json" }}
function request()
  counter = counter + 1
  local nonce = string.format("%02d%014d", thread_id or 0, counter)
  local body = prefix .. nonce .. suffix
  local timestamp = tostring(os.time())
  local message = "v0:" .. timestamp .. ":" .. body
  crypto.HMAC(crypto.EVP_sha256(), secret, #secret, message, #message, digest, digest_len)
  local signature = {{}}
  for i = 0, 31 do signature[i + 1] = hex[digest[i]] end
  headers["x-zm-request-timestamp"] = timestamp
  headers["x-zm-signature"] = "v0=" .. table.concat(signature)
  headers["x-zm-trackingid"] = "bench-" .. nonce
  return wrk.format("POST", nil, headers, body)
end
"#,
        secret = lua_string(secret),
        prefix = lua_string(prefix),
        suffix = lua_string(suffix),
    )
}
