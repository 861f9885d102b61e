// SPDX-License-Identifier: MPL-2.0
//! SecureToken: a shared secret proven after `connect` (Wowza's SecureToken
//! version 1, and what librtmp and GStreamer's rtmp2 answer).
//!
//! The server's `connect` answer carries `secureToken` in its info object:
//! a random text encrypted with the secret by XXTEA (Corrected Block TEA),
//! in hexadecimal. The client decrypts it with the same secret and sends it
//! back in a `secureTokenResponse` command (transaction 0, a null command
//! object, the text), before anything else; a server that gets no answer,
//! or a wrong one, refuses the client's streams.
//!
//! The key is the secret's first 16 bytes (fewer are padded with zeros),
//! as four little-endian words; the text is hexadecimal, eight digits to a
//! little-endian word; the answer ends at its first zero byte.

use crate::error::{Error, Result};

/// The most hexadecimal digits a challenge may have (a server's is a few
/// dozen): a hostile server cannot make a client decrypt megabytes.
pub const MAX_CHALLENGE_HEX: usize = 1024;

/// A SecureToken secret. `Debug` never shows it (configurations that hold
/// one may be logged).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

const DELTA: u32 = 0x9e37_79b9;

fn key_words(secret: &str) -> [u32; 4] {
    let mut bytes = [0u8; 16];
    let s = secret.as_bytes();
    let n = s.len().min(16);
    bytes[..n].copy_from_slice(&s[..n]);
    std::array::from_fn(|i| u32::from_le_bytes(bytes[i * 4..i * 4 + 4].try_into().unwrap()))
}

fn mx(sum: u32, y: u32, z: u32, p: usize, e: u32, k: &[u32; 4]) -> u32 {
    (((z >> 5) ^ (y << 2)).wrapping_add((y >> 3) ^ (z << 4)))
        ^ ((sum ^ y).wrapping_add(k[(p & 3) ^ e as usize] ^ z))
}

fn rounds(n: usize) -> u32 {
    6 + 52 / n as u32
}

/// XXTEA encryption of `v` (two words or more) in place.
fn encrypt_words(v: &mut [u32], k: &[u32; 4]) {
    let n = v.len();
    debug_assert!(n >= 2);
    let mut sum = 0u32;
    let mut z = v[n - 1];
    for _ in 0..rounds(n) {
        sum = sum.wrapping_add(DELTA);
        let e = (sum >> 2) & 3;
        for p in 0..n {
            let y = v[(p + 1) % n];
            v[p] = v[p].wrapping_add(mx(sum, y, z, p, e, k));
            z = v[p];
        }
    }
}

/// XXTEA decryption of `v` (two words or more) in place.
fn decrypt_words(v: &mut [u32], k: &[u32; 4]) {
    let n = v.len();
    debug_assert!(n >= 2);
    let mut sum = rounds(n).wrapping_mul(DELTA);
    let mut y = v[0];
    while sum != 0 {
        let e = (sum >> 2) & 3;
        for p in (0..n).rev() {
            let z = v[(p + n - 1) % n];
            v[p] = v[p].wrapping_sub(mx(sum, y, z, p, e, k));
            y = v[p];
        }
        sum = sum.wrapping_sub(DELTA);
    }
}

fn hex_words(hex: &str) -> Result<Vec<u32>> {
    let bad = |why: &str| Error::protocol(format!("server's secureToken {why}"));
    if hex.len() > MAX_CHALLENGE_HEX {
        return Err(bad(&format!(
            "is {} characters long (at most {MAX_CHALLENGE_HEX})",
            hex.len()
        )));
    }
    if !hex.len().is_multiple_of(8) || hex.len() < 16 {
        return Err(bad(&format!(
            "is {} hexadecimal digits, not a multiple of 8 of at least 16",
            hex.len()
        )));
    }
    let digit = |c: u8| {
        (c as char)
            .to_digit(16)
            .ok_or_else(|| bad("is not hexadecimal"))
    };
    hex.as_bytes()
        .chunks_exact(8)
        .map(|word| {
            let mut bytes = [0u8; 4];
            for (b, pair) in bytes.iter_mut().zip(word.chunks_exact(2)) {
                *b = (digit(pair[0])? << 4 | digit(pair[1])?) as u8;
            }
            Ok(u32::from_le_bytes(bytes))
        })
        .collect()
}

/// The client's answer to a server's `secureToken` challenge, with the
/// shared `secret`. A challenge that is not hexadecimal words (two or
/// more, at most [`MAX_CHALLENGE_HEX`] digits) is an error.
pub fn response(secret: &str, challenge: &str) -> Result<String> {
    let mut words = hex_words(challenge)?;
    decrypt_words(&mut words, &key_words(secret));
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    Ok(String::from_utf8_lossy(&bytes[..end]).into_owned())
}

/// The server's side: a challenge for `nonce` (what the client must answer
/// is [`expected_answer`] of the same nonce) with the shared `secret`.
pub fn challenge(secret: &str, nonce: &[u8; 16]) -> String {
    let text = expected_answer(nonce);
    let mut words: Vec<u32> = text
        .as_bytes()
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    encrypt_words(&mut words, &key_words(secret));
    words
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a client knowing the secret answers to the challenge of `nonce`:
/// the nonce in hexadecimal (text with no zero byte, whole words).
pub fn expected_answer(nonce: &[u8; 16]) -> String {
    nonce.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference cipher's published test vector (Wheeler and Needham's
    /// XXTEA, as in the Wikipedia article and its test suites): an all-zero
    /// key and two zero words.
    #[test]
    fn xxtea_matches_the_reference_vector() {
        let mut v = [0u32, 0];
        encrypt_words(&mut v, &[0; 4]);
        assert_eq!(v, [0x053704ab, 0x575d8c80]);
        decrypt_words(&mut v, &[0; 4]);
        assert_eq!(v, [0, 0]);
    }

    #[test]
    fn decryption_undoes_encryption_for_every_length() {
        let k = key_words("a secret longer than sixteen bytes");
        for n in 2..40 {
            let plain: Vec<u32> = (0..n as u32)
                .map(|i| i.wrapping_mul(0x0101_0101) ^ 0xdead_beef)
                .collect();
            let mut v = plain.clone();
            encrypt_words(&mut v, &k);
            assert_ne!(v, plain, "{n} words");
            decrypt_words(&mut v, &k);
            assert_eq!(v, plain, "{n} words");
        }
    }

    #[test]
    fn a_client_with_the_secret_answers_the_challenge() {
        let nonce = *b"0123456789abcdef";
        let c = challenge("s3cret", &nonce);
        assert_eq!(c.len(), 64);
        assert_eq!(response("s3cret", &c).unwrap(), expected_answer(&nonce));
        assert_ne!(response("wrong", &c).unwrap(), expected_answer(&nonce));
        // Only the first 16 bytes of the secret count.
        let long = challenge("0123456789abcdefXYZ", &nonce);
        assert_eq!(
            response("0123456789abcdef", &long).unwrap(),
            expected_answer(&nonce)
        );
        // Upper-case digits are read too.
        assert_eq!(
            response("s3cret", &c.to_uppercase()).unwrap(),
            expected_answer(&nonce)
        );
    }

    #[test]
    fn a_secret_is_never_shown() {
        assert_eq!(format!("{:?}", Secret("s3cret".into())), "Secret(***)");
    }

    #[test]
    fn malformed_challenges_are_errors_not_panics() {
        for bad in [
            "",
            "00",
            "0123456789abcde",
            "0123456789abcdeg",
            "0123456789abcdef0",
            "ééééééééééééééé",
        ] {
            assert!(response("k", bad).is_err(), "{bad:?}");
        }
        assert!(response("k", &"0".repeat(MAX_CHALLENGE_HEX + 8)).is_err());
        assert!(response("k", &"0".repeat(MAX_CHALLENGE_HEX)).is_ok());
    }
}
