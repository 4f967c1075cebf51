//! # ecp-ffi
//!
//! A C ABI over the high-level operations of ecp-rs, for C and C++ integrators: opaque handles,
//! error codes with a message getter, a generated header (cbindgen) and a C test that links the
//! static library. The functions land with the issues whose operations they expose; `unsafe` is
//! denied by default and allowed item by item at the boundary only.
//!
//! For now the crate exports only its version, so the build of the `cdylib` and `staticlib` is
//! exercised from the start.

/// The version of ecp-ffi as a NUL-terminated C string; the pointer is valid for the life of the
/// program.
#[unsafe(no_mangle)]
#[allow(unsafe_code)]
pub extern "C" fn ecp_version() -> *const std::ffi::c_char {
    static VERSION: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => c"unknown",
    };
    VERSION.as_ptr()
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_is_the_package_version() {
        // SAFETY: ecp_version returns a pointer to a static, NUL-terminated string.
        #[allow(unsafe_code)]
        let v = unsafe { std::ffi::CStr::from_ptr(super::ecp_version()) };
        assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }
}
