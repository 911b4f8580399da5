//! RSA signature verification: the public-key operation and the PKCS #1
//! v1.5 and PSS encoding checks of RFC 8017, nothing else.
//!
//! Most providers sign their tokens with RS256, so this check runs on every
//! token. The general-purpose big-number code under jwt-simple costs about a
//! millisecond per RSA-2048 verification inside Envoy's wasm runtime, which
//! has no 64×64→128-bit multiply: every wide product becomes a call to a
//! software routine. The public operation needs no general arithmetic: with
//! the usual exponent 65537 it is 16 Montgomery squarings and one
//! multiplication. This module does them on 32-bit limbs, whose 64-bit
//! products wasm multiplies natively, and prepares each key's Montgomery
//! constants once, when the JWKS is loaded, never per token.
//!
//! Only public data goes through here (the modulus, the exponent, the
//! signature and the message digest), so the code does not need to run in
//! constant time. Signing, which involves the private key, stays with
//! jwt-simple.
//!
//! The decoding is strict: the signature must be exactly as long as the
//! modulus and smaller than it; a PKCS #1 v1.5 encoding is rebuilt from the
//! digest and compared whole (so the DigestInfo must carry its NULL
//! parameter, as RFC 8017 writes it); a PSS salt must be as long as the
//! digest, as RFC 7518 requires for PS256, PS384 and PS512. Keys have a
//! modulus of 2048 to 8192 bits and an odd exponent of at most 32 bits;
//! which exponents to trust is the caller's policy.

use sha2::{Digest, Sha256, Sha384, Sha512};

/// Smallest modulus accepted, in bits (RFC 7518, section 3.3).
pub const MIN_MODULUS_BITS: usize = 2048;
/// Largest modulus accepted, in bits.
pub const MAX_MODULUS_BITS: usize = 8192;

/// The hash function a signature is made over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    /// The digest of `message`.
    pub fn digest(self, message: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(message).to_vec(),
            Hash::Sha384 => Sha384::digest(message).to_vec(),
            Hash::Sha512 => Sha512::digest(message).to_vec(),
        }
    }

    fn len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    /// The DER encoding of the DigestInfo that precedes the digest in a
    /// PKCS #1 v1.5 signature (RFC 8017, section 9.2, note 1).
    fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            Hash::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            Hash::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            Hash::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }
}

/// Why a public key was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The modulus is shorter than 2048 or longer than 8192 bits.
    ModulusSize(usize),
    /// The modulus is even, so it cannot be an RSA modulus.
    EvenModulus,
    /// The exponent is even, below 3, or wider than 32 bits.
    Exponent,
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyError::ModulusSize(bits) => write!(
                f,
                "RSA modulus of {bits} bits (accepted: {MIN_MODULUS_BITS} to {MAX_MODULUS_BITS})"
            ),
            KeyError::EvenModulus => f.write_str("RSA modulus is even"),
            KeyError::Exponent => {
                f.write_str("RSA exponent must be odd, at least 3 and at most 32 bits wide")
            }
        }
    }
}

/// A signature that does not verify. The variants are not told apart to
/// the outside: every one means "not signed by this key".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadSignature;

/// Bits per limb. A product of two limbs fits in 56 bits, so a 64-bit
/// accumulator can add up 255 of them before it could overflow: a whole
/// column of a 4096-bit multiplication (147 limbs), with no carry to
/// propagate between products. Carries are propagated once per column.
const LIMB_BITS: u32 = 28;
const LIMB_MASK: u64 = (1 << LIMB_BITS) - 1;

/// An RSA public key with its Montgomery constants, ready to verify.
#[derive(Clone)]
pub struct PublicKey {
    /// The modulus as big-endian bytes, as long as a signature.
    modulus_bytes: Vec<u8>,
    /// The modulus in 28-bit limbs, least significant first.
    modulus: Vec<u64>,
    /// -modulus⁻¹ mod 2²⁸.
    minus_inverse: u64,
    /// R² mod modulus, with R = 2^(28 × limbs): turns a number into
    /// Montgomery form with one multiplication.
    r_squared: Vec<u64>,
    exponent: u32,
    bits: usize,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey")
            .field("bits", &self.bits)
            .field("exponent", &self.exponent)
            .finish()
    }
}

impl PublicKey {
    /// Prepares a key from its modulus and exponent as big-endian bytes, as
    /// a JWK's `n` and `e` carry them. Leading zero bytes are ignored.
    pub fn from_be_bytes(modulus: &[u8], exponent: &[u8]) -> Result<Self, KeyError> {
        let modulus = strip_leading_zeros(modulus);
        let bits = bit_length(modulus);
        if !(MIN_MODULUS_BITS..=MAX_MODULUS_BITS).contains(&bits) {
            return Err(KeyError::ModulusSize(bits));
        }
        if modulus.last().is_some_and(|byte| byte & 1 == 0) {
            return Err(KeyError::EvenModulus);
        }
        let exponent = strip_leading_zeros(exponent);
        if exponent.len() > 4 {
            return Err(KeyError::Exponent);
        }
        let exponent = exponent
            .iter()
            .fold(0u32, |value, byte| (value << 8) | u32::from(*byte));
        if exponent < 3 || exponent & 1 == 0 {
            return Err(KeyError::Exponent);
        }

        let limbs = from_be_bytes(modulus, bits.div_ceil(LIMB_BITS as usize));
        let minus_inverse = minus_inverse(limbs[0]);
        let r_squared = r_squared(&limbs, bits);
        Ok(PublicKey {
            modulus_bytes: modulus.to_vec(),
            modulus: limbs,
            minus_inverse,
            r_squared,
            exponent,
            bits,
        })
    }

    /// The size of the modulus in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// The public exponent.
    pub fn exponent(&self) -> u32 {
        self.exponent
    }

    /// Verifies an RSASSA-PKCS1-v1_5 signature (RFC 8017, section 8.2.2)
    /// over `message`.
    pub fn verify_pkcs1v15(
        &self,
        hash: Hash,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), BadSignature> {
        let encoded = self.public_operation(signature)?;

        let digest = hash.digest(message);
        let prefix = hash.digest_info_prefix();
        let padding = encoded
            .len()
            .checked_sub(3 + prefix.len() + digest.len())
            .filter(|padding| *padding >= 8)
            .ok_or(BadSignature)?;
        let expected = [0x00, 0x01]
            .into_iter()
            .chain(std::iter::repeat_n(0xff, padding))
            .chain([0x00])
            .chain(prefix.iter().copied())
            .chain(digest);
        if encoded.iter().copied().eq(expected) {
            Ok(())
        } else {
            Err(BadSignature)
        }
    }

    /// Verifies an RSASSA-PSS signature (RFC 8017, section 8.1.2) over
    /// `message`, with MGF1 over the same hash and a salt as long as the
    /// digest.
    pub fn verify_pss(
        &self,
        hash: Hash,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), BadSignature> {
        let encoded = self.public_operation(signature)?;

        // EMSA-PSS works on modBits - 1 bits: when the modulus fills whole
        // bytes, the encoded message is one byte shorter and the leading
        // byte of the result must be zero.
        let em_bits = self.bits - 1;
        let em_len = em_bits.div_ceil(8);
        let (leading, em) = encoded.split_at(encoded.len() - em_len);
        if leading.iter().any(|byte| *byte != 0) {
            return Err(BadSignature);
        }
        let h_len = hash.len();
        let salt_len = h_len;
        if em_len < h_len + salt_len + 2 || em.last() != Some(&0xbc) {
            return Err(BadSignature);
        }

        let (masked_db, rest) = em.split_at(em_len - h_len - 1);
        let h = &rest[..h_len];
        let top_mask = 0xffu8 >> (8 * em_len - em_bits);
        if masked_db[0] & !top_mask != 0 {
            return Err(BadSignature);
        }
        let mut db = mgf1(hash, h, masked_db.len());
        db.iter_mut()
            .zip(masked_db)
            .for_each(|(byte, masked)| *byte ^= masked);
        db[0] &= top_mask;

        let (padding, tail) = db.split_at(em_len - h_len - salt_len - 2);
        if padding.iter().any(|byte| *byte != 0) || tail[0] != 0x01 {
            return Err(BadSignature);
        }
        let salt = &tail[1..];

        let mut prime = Vec::with_capacity(8 + h_len + salt_len);
        prime.extend_from_slice(&[0; 8]);
        prime.extend_from_slice(&hash.digest(message));
        prime.extend_from_slice(salt);
        if hash.digest(&prime) == h {
            Ok(())
        } else {
            Err(BadSignature)
        }
    }

    /// signature^e mod n, as many big-endian bytes as the modulus has.
    /// Refuses a signature of another length, or not smaller than the
    /// modulus (RFC 8017, sections 5.2.2 and 8.2.2, step 1).
    fn public_operation(&self, signature: &[u8]) -> Result<Vec<u8>, BadSignature> {
        // Both are big-endian and of the same length, so comparing them as
        // byte strings compares them as numbers.
        if signature.len() != self.modulus_bytes.len() || signature >= &self.modulus_bytes[..] {
            return Err(BadSignature);
        }
        let limbs = self.modulus.len();
        let signature = from_be_bytes(signature, limbs);

        let mut scratch = vec![0u64; limbs];
        let mut base = vec![0u64; limbs];
        self.multiply(&signature, &self.r_squared, &mut scratch, &mut base);

        // Left to right over the exponent's bits, below the top one.
        let mut result = base.clone();
        let mut product = vec![0u64; limbs];
        let top = 31 - self.exponent.leading_zeros();
        for bit in (0..top).rev() {
            self.square(&result, &mut scratch, &mut product);
            std::mem::swap(&mut result, &mut product);
            if self.exponent >> bit & 1 == 1 {
                self.multiply(&result, &base, &mut scratch, &mut product);
                std::mem::swap(&mut result, &mut product);
            }
        }

        let mut one = vec![0u64; limbs];
        one[0] = 1;
        self.multiply(&result, &one, &mut scratch, &mut product);
        Ok(to_be_bytes(&product, self.modulus_bytes.len()))
    }

    /// out = a × b × R⁻¹ mod n, for a, b < n.
    ///
    /// Montgomery multiplication with the product and the reduction
    /// interleaved column by column (the "finely integrated product
    /// scanning" of Koç, Acar and Kaliski). Column i of the result sums
    /// a_j × b_(i-j) and m_j × n_(i-j), where m_i is chosen so that the
    /// low column is divisible by 2²⁸; the low half of the columns is
    /// therefore zero and the high half is the result. `quotient` holds
    /// the m_j.
    fn multiply(&self, a: &[u64], b: &[u64], quotient: &mut [u64], out: &mut [u64]) {
        let limbs = self.modulus.len();
        let mut carry = 0u64;

        for i in 0..limbs {
            let products = a[..i].iter().zip(b[1..=i].iter().rev());
            let ab = carry + products.map(|(x, y)| x * y).sum::<u64>() + a[i] * b[0];
            carry = self.reduce_low_column(i, ab, quotient);
        }
        for i in limbs..2 * limbs - 1 {
            let start = i + 1 - limbs;
            let products = a[start..].iter().zip(b[start..].iter().rev());
            let ab = carry + products.map(|(x, y)| x * y).sum::<u64>();
            carry = self.high_column(i, ab, quotient, out);
        }
        self.finish(carry, out);
    }

    /// out = a² × R⁻¹ mod n, for a < n: [`Self::multiply`] with each
    /// product a_j × a_k (j ≠ k) computed once and doubled.
    fn square(&self, a: &[u64], quotient: &mut [u64], out: &mut [u64]) {
        let limbs = self.modulus.len();
        let mut carry = 0u64;

        for i in 0..limbs {
            let half = i.div_ceil(2);
            let products = a[..half].iter().zip(a[i + 1 - half..=i].iter().rev());
            let ab = carry + 2 * products.map(|(x, y)| x * y).sum::<u64>() + middle(a, i);
            carry = self.reduce_low_column(i, ab, quotient);
        }
        for i in limbs..2 * limbs - 1 {
            let start = i + 1 - limbs;
            let half = i.div_ceil(2);
            let products = a[start..half].iter().zip(a[i + 1 - half..].iter().rev());
            let ab = carry + 2 * products.map(|(x, y)| x * y).sum::<u64>() + middle(a, i);
            carry = self.high_column(i, ab, quotient, out);
        }
        self.finish(carry, out);
    }

    /// Column i < limbs: adds the m_j × n_(i-j) products, picks m_i so the
    /// column becomes divisible by 2²⁸, and returns the carry.
    fn reduce_low_column(&self, i: usize, ab: u64, quotient: &mut [u64]) -> u64 {
        let n = &self.modulus;
        let products = quotient[..i].iter().zip(n[1..=i].iter().rev());
        let mut mn = products.map(|(x, y)| x * y).sum::<u64>();
        let low = (ab + (mn & LIMB_MASK)) & LIMB_MASK;
        let m = (low * self.minus_inverse) & LIMB_MASK;
        quotient[i] = m;
        mn += m * n[0];
        column_carry(ab, mn)
    }

    /// Column i ≥ limbs: adds the m_j × n_(i-j) products, stores the
    /// column's limb of the result and returns the carry.
    fn high_column(&self, i: usize, ab: u64, quotient: &[u64], out: &mut [u64]) -> u64 {
        let limbs = self.modulus.len();
        let start = i + 1 - limbs;
        let products = quotient[start..]
            .iter()
            .zip(self.modulus[start..].iter().rev());
        let mn = products.map(|(x, y)| x * y).sum::<u64>();
        out[i - limbs] = ((ab & LIMB_MASK) + (mn & LIMB_MASK)) & LIMB_MASK;
        column_carry(ab, mn)
    }

    /// Stores the last carry as the top limb; the result is below 2n, so
    /// one subtraction at most brings it below n.
    fn finish(&self, carry: u64, out: &mut [u64]) {
        let limbs = self.modulus.len();
        out[limbs - 1] = carry & LIMB_MASK;
        if carry >> LIMB_BITS != 0 || !less_than(out, &self.modulus) {
            subtract_in_place(out, &self.modulus);
        }
    }
}

/// a_(i/2)², the one product of column i of a square that has no twin.
fn middle(a: &[u64], i: usize) -> u64 {
    if i % 2 == 0 {
        a[i / 2] * a[i / 2]
    } else {
        0
    }
}

/// The carry out of a column whose two partial sums are `ab` and `mn`.
fn column_carry(ab: u64, mn: u64) -> u64 {
    (ab >> LIMB_BITS) + (mn >> LIMB_BITS) + (((ab & LIMB_MASK) + (mn & LIMB_MASK)) >> LIMB_BITS)
}

/// MGF1 (RFC 8017, appendix B.2.1): `len` bytes of mask from `seed`.
fn mgf1(hash: Hash, seed: &[u8], len: usize) -> Vec<u8> {
    let mut mask = Vec::with_capacity(len + hash.len());
    let mut counter = 0u32;
    while mask.len() < len {
        let mut input = Vec::with_capacity(seed.len() + 4);
        input.extend_from_slice(seed);
        input.extend_from_slice(&counter.to_be_bytes());
        mask.extend_from_slice(&hash.digest(&input));
        counter += 1;
    }
    mask.truncate(len);
    mask
}

/// -x⁻¹ mod 2²⁸ for an odd x, by Newton's iteration: each step doubles the
/// number of correct low bits, and x is its own inverse modulo 2³.
fn minus_inverse(x: u64) -> u64 {
    let mut inverse = x;
    for _ in 0..4 {
        inverse = inverse.wrapping_mul(2u64.wrapping_sub(x.wrapping_mul(inverse)));
    }
    inverse.wrapping_neg() & LIMB_MASK
}

/// R² mod n, with R = 2^(28 × limbs), by doubling: start from the largest
/// power of two below n and double modulo n up to 2^(56 × limbs).
fn r_squared(n: &[u64], bits: usize) -> Vec<u64> {
    let limb_bits = LIMB_BITS as usize;
    let mut value = vec![0u64; n.len()];
    value[(bits - 1) / limb_bits] = 1 << ((bits - 1) % limb_bits);
    for _ in (bits - 1)..(2 * limb_bits * n.len()) {
        let overflow = double(&mut value);
        if overflow || !less_than(&value, n) {
            subtract_in_place(&mut value, n);
        }
    }
    value
}

/// value <<= 1; returns whether a bit left the top limb.
fn double(value: &mut [u64]) -> bool {
    let mut carry = 0;
    for limb in value.iter_mut() {
        let shifted = (*limb << 1) | carry;
        *limb = shifted & LIMB_MASK;
        carry = shifted >> LIMB_BITS;
    }
    carry == 1
}

/// a -= b, modulo 2^(28 × limbs).
fn subtract_in_place(a: &mut [u64], b: &[u64]) {
    let mut borrow = 0u64;
    for (a_limb, &b_limb) in a.iter_mut().zip(b) {
        let difference = a_limb.wrapping_sub(b_limb).wrapping_sub(borrow);
        *a_limb = difference & LIMB_MASK;
        borrow = difference >> 63;
    }
}

/// a < b, both of the same number of limbs.
fn less_than(a: &[u64], b: &[u64]) -> bool {
    a.iter().rev().cmp(b.iter().rev()) == std::cmp::Ordering::Less
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes
        .iter()
        .position(|byte| *byte != 0)
        .unwrap_or(bytes.len());
    &bytes[first..]
}

fn bit_length(bytes: &[u8]) -> usize {
    match bytes.first() {
        Some(first) => bytes.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

/// Big-endian bytes to `limbs` little-endian 28-bit limbs. The caller
/// makes sure the number fits (it is smaller than the modulus).
fn from_be_bytes(bytes: &[u8], limbs: usize) -> Vec<u64> {
    let mut out = vec![0u64; limbs];
    let mut pending = 0u64;
    let mut pending_bits = 0;
    let mut index = 0;
    for byte in bytes.iter().rev() {
        pending |= u64::from(*byte) << pending_bits;
        pending_bits += 8;
        if pending_bits >= LIMB_BITS {
            if let Some(limb) = out.get_mut(index) {
                *limb = pending & LIMB_MASK;
            }
            pending >>= LIMB_BITS;
            pending_bits -= LIMB_BITS;
            index += 1;
        }
    }
    if let Some(limb) = out.get_mut(index) {
        *limb = pending;
    }
    out
}

/// Little-endian 28-bit limbs to `len` big-endian bytes; the value must
/// fit.
fn to_be_bytes(limbs: &[u64], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut slots = out.iter_mut().rev();
    let mut pending = 0u64;
    let mut pending_bits = 0;
    for limb in limbs {
        pending |= limb << pending_bits;
        pending_bits += LIMB_BITS;
        while pending_bits >= 8 {
            if let Some(slot) = slots.next() {
                *slot = pending as u8;
            }
            pending >>= 8;
            pending_bits -= 8;
        }
    }
    if let Some(slot) = slots.next() {
        *slot = pending as u8;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An odd modulus of `bits` bits: all ones.
    fn modulus(bits: usize) -> Vec<u8> {
        let mut bytes = vec![0xff; bits.div_ceil(8)];
        bytes[0] = 0xff >> (8 * bytes.len() - bits);
        bytes
    }

    #[test]
    fn keys_of_unusable_shapes_are_refused() {
        let f4 = [0x01, 0x00, 0x01];
        assert!(PublicKey::from_be_bytes(&modulus(2048), &f4).is_ok());
        assert!(PublicKey::from_be_bytes(&modulus(8192), &f4).is_ok());
        assert_eq!(
            PublicKey::from_be_bytes(&modulus(2047), &f4).err(),
            Some(KeyError::ModulusSize(2047))
        );
        assert_eq!(
            PublicKey::from_be_bytes(&modulus(8193), &f4).err(),
            Some(KeyError::ModulusSize(8193))
        );
        let mut even = modulus(2048);
        even[255] = 0xfe;
        assert_eq!(
            PublicKey::from_be_bytes(&even, &f4).err(),
            Some(KeyError::EvenModulus)
        );
        assert!(PublicKey::from_be_bytes(&modulus(2048), &[0x03]).is_ok());
        for exponent in [
            &[0x01][..],
            &[0x01, 0x00, 0x00],
            &[0x01, 0x00, 0x01, 0x00, 0x01],
            &[],
        ] {
            assert_eq!(
                PublicKey::from_be_bytes(&modulus(2048), exponent).err(),
                Some(KeyError::Exponent),
                "exponent {exponent:02x?}"
            );
        }
    }

    #[test]
    fn leading_zero_bytes_of_a_jwk_are_ignored() {
        let mut padded = vec![0, 0];
        padded.extend(modulus(2048));
        let key = PublicKey::from_be_bytes(&padded, &[0, 0x01, 0x00, 0x01]).unwrap();
        assert_eq!(key.bits(), 2048);
    }

    #[test]
    fn limbs_round_trip_through_bytes() {
        let bytes: Vec<u8> = (0..=255u8).collect();
        let limbs = from_be_bytes(&bytes, 2048usize.div_ceil(LIMB_BITS as usize));
        assert!(limbs.iter().all(|limb| *limb <= LIMB_MASK));
        assert_eq!(to_be_bytes(&limbs, 256), bytes);
    }

    #[test]
    fn minus_inverse_is_the_negated_inverse_modulo_2_to_the_28() {
        for odd in [1u64, 3, 0x0fff_ffff, 0x0123_4567] {
            assert_eq!(
                (odd * minus_inverse(odd)) & LIMB_MASK,
                LIMB_MASK,
                "{odd:#x}"
            );
        }
    }
}
