//! Secrets: approvers' passwords (Argon2id, PHC strings), API tokens (stored as SHA-256), random
//! session ids and CSRF tokens, and comparing them without leaking where they differ.

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Hex of `bytes` random bytes from the OS.
pub fn random_hex(bytes: usize) -> Result<String, String> {
    let mut buffer = vec![0u8; bytes];
    getrandom::getrandom(&mut buffer).map_err(|e| format!("random: {e}"))?;
    Ok(hex(&buffer))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Equal strings, compared in time that does not depend on where they differ.
pub fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The SHA-256 (hex) an approvers file holds for an API token.
pub fn token_sha256(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// A password as an Argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`).
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| format!("random: {e}"))?;
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| format!("hashing the password: {e}"))
}

/// Whether `phc` is a password hash this service can check (read when the file is loaded, so a
/// broken entry stops the start, not a login).
pub fn check_password_hash(phc: &str) -> Result<(), String> {
    let hash = PasswordHash::new(phc).map_err(|e| format!("not a PHC string: {e}"))?;
    if !hash.algorithm.as_str().starts_with("argon2") {
        return Err(format!(
            "{} is not supported: use approval-service hash-password (Argon2id)",
            hash.algorithm
        ));
    }
    Ok(())
}

pub fn password_matches(password: &str, phc: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), phc)
        .is_ok()
}

/// `approval-service hash-password` and `hash-token`: the secret from stdin (one line; the line
/// end is not part of it), what to put in the approvers file on stdout. `None`: not one of them.
pub fn run_subcommand(name: &str) -> Option<Result<(), String>> {
    let hash: fn(&str) -> Result<String, String> = match name {
        "hash-password" => hash_password,
        "hash-token" => |token| Ok(token_sha256(token)),
        _ => return None,
    };
    Some(read_secret().and_then(|secret| {
        println!("{}", hash(&secret)?);
        Ok(())
    }))
}

fn read_secret() -> Result<String, String> {
    let mut input = String::new();
    std::io::stdin()
        .read_line(&mut input)
        .map_err(|e| format!("reading the secret from stdin: {e}"))?;
    let secret = input.strip_suffix('\n').unwrap_or(&input);
    let secret = secret.strip_suffix('\r').unwrap_or(secret);
    if secret.is_empty() {
        return Err("no secret on stdin".into());
    }
    Ok(secret.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_matches_its_hash_only() {
        let phc = hash_password("correct horse").unwrap_or_default();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert_eq!(check_password_hash(&phc), Ok(()));
        assert!(password_matches("correct horse", &phc));
        assert!(!password_matches("correct horse ", &phc));
        assert_ne!(hash_password("correct horse").unwrap_or_default(), phc);
    }

    #[test]
    fn a_token_hash_is_its_sha256() {
        assert_eq!(
            token_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
