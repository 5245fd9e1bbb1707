//! The enrollment QR code as a `data:image/png;base64,` URL, which Medplum returns as
//! `enrollQrCode`. The PNG (ISO/IEC 15948) is written by hand: a 1-bit grayscale image whose
//! zlib stream (RFC 1950) uses stored, uncompressed deflate blocks (RFC 1951 §3.2.4), so no
//! image or compression library is needed for an image of a few kilobytes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use qrcodegen::{QrCode, QrCodeEcc};

/// Pixels per QR module.
const SCALE: usize = 4;
/// Quiet zone around the symbol, in modules (ISO/IEC 18004 requires 4).
const BORDER: usize = 4;

/// Renders `text` as a QR code PNG data URL, or `None` when the text is too long to encode.
pub fn qr_data_url(text: &str) -> Option<String> {
    let code = QrCode::encode_text(text, QrCodeEcc::Medium).ok()?;
    let modules = usize::try_from(code.size()).ok()?;
    let side = (modules + 2 * BORDER) * SCALE;

    // Scanlines: a filter byte (0, none) and then one bit per pixel, 1 = white.
    let row_bytes = side.div_ceil(8);
    let mut pixels = Vec::with_capacity((row_bytes + 1) * side);
    for y in 0..side {
        pixels.push(0);
        let mut row = vec![0xffu8; row_bytes];
        let module_y = (y / SCALE) as i64 - BORDER as i64;
        for x in 0..side {
            let module_x = (x / SCALE) as i64 - BORDER as i64;
            let dark =
                code.get_module(i32::try_from(module_x).ok()?, i32::try_from(module_y).ok()?);
            if dark {
                row[x / 8] &= !(0x80 >> (x % 8));
            }
        }
        pixels.extend_from_slice(&row);
    }

    let side = u32::try_from(side).ok()?;
    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&side.to_be_bytes());
    header.extend_from_slice(&side.to_be_bytes());
    // Bit depth 1, colour type 0 (grayscale), deflate, adaptive filtering, no interlace.
    header.extend_from_slice(&[1, 0, 0, 0, 0]);

    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    write_chunk(&mut png, b"IHDR", &header);
    write_chunk(&mut png, b"IDAT", &zlib_stored(&pixels));
    write_chunk(&mut png, b"IEND", &[]);
    Some(format!("data:image/png;base64,{}", STANDARD.encode(png)))
}

fn write_chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    let length = u32::try_from(data.len()).expect("chunk fits in u32");
    png.extend_from_slice(&length.to_be_bytes());
    let start = png.len();
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    let crc = crc32(&png[start..]);
    png.extend_from_slice(&crc.to_be_bytes());
}

/// Wraps data in a zlib stream of stored deflate blocks of at most 65,535 bytes each.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let mut blocks = data.chunks(0xffff).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        let last = u8::from(blocks.peek().is_none());
        let length = u16::try_from(block.len()).expect("block is at most 65535 bytes");
        out.push(last);
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(&(!length).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

/// CRC-32 as PNG uses it (ISO 3309, reflected polynomial 0xEDB88320).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for byte in data {
        a = (a + u32::from(*byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_known_values() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
    }

    #[test]
    fn data_url_holds_a_png() {
        let url =
            qr_data_url("otpauth://totp/medplum.com:a?secret=ABC&issuer=medplum.com").unwrap();
        let png = STANDARD
            .decode(url.strip_prefix("data:image/png;base64,").unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert_eq!(&png[12..16], b"IHDR");
        assert!(png.ends_with(&[0xae, 0x42, 0x60, 0x82]), "IEND CRC");
    }
}
