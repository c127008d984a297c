//! A failing C call's status and message, for tests of the C boundary.

use std::ffi::CStr;

use ::mmpool::ffi::mmpool_status;
use ::mmpool::ffi::process::mmpool_last_error;

/// This thread's last failure message.
pub fn last_error() -> String {
    // SAFETY: mmpool_last_error never returns NULL and the text is valid
    // until the next failing call on this thread.
    unsafe { CStr::from_ptr(mmpool_last_error()) }.to_string_lossy().into_owned()
}

/// Asserts a call failed with `code` and a message containing `words`.
pub fn expect_fail(status: mmpool_status, code: mmpool_status, words: &str) {
    assert_eq!(status, code, "{}", last_error());
    let msg = last_error();
    assert!(msg.contains(words), "message `{msg}` lacks `{words}`");
}
