//! Hypercall decoding (`mica_abi::args::decode`, what `Kernel::dispatch` does first with
//! every call): malformed arguments, and no input panics.

use mica_abi::hypercall::{Call, SELF_DOMAIN};
use mica_abi::Status;

use mica_abi::args::{decode, Args, Whoami};

#[test]
fn decode_rejects_malformed_arguments() {
    assert_eq!(
        decode(Call::CapIdentify, [0x1_0003, 0, 0, 0, 0, 0]),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        decode(Call::ConsoleWrite, [41, 0, 0, 0, 0, 0]),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        decode(Call::CapDerive, [0, 1, 1 << 20, 0, 0, 0]),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        decode(Call::CapDerive, [0, 1, 1 << 40, 0, 0, 0]),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        decode(Call::MemMap, [SELF_DOMAIN, 0, 0x4000_0001, 0, 1, 1]),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        decode(Call::MemMap, [SELF_DOMAIN, 0, 0x4000_0000, 0, 0, 1]),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        decode(Call::MemMap, [SELF_DOMAIN, 0, 0x4000_0000, 0, 1, 2]),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        decode(Call::MemMap, [SELF_DOMAIN, 0, 0x4000_0000, 0, u64::MAX, 1]),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        decode(Call::MemMap, [SELF_DOMAIN, 0, 1 << 40, 0, 1, 1]),
        Err(Status::OutOfRange)
    );
    assert_eq!(
        decode(Call::MemUnmap, [0x1_0000, 0x4000_0000, 1, 0, 0, 0]),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        decode(Call::Whoami, [u64::MAX; 6]),
        Ok(Args::Whoami(Whoami {}))
    );
}

#[test]
fn decode_never_panics_on_any_input() {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Bias towards small and boundary values.
        match x % 4 {
            0 => x % 8,
            1 => x,
            2 => 0x4000_0000 + (x % 16) * 0x1000,
            _ => u64::MAX - (x % 3),
        }
    };
    // Every call of the table, the same number of times (it used to pick `TABLE[n % 16]`,
    // which left 14 calls unfuzzed).
    for spec in mica_abi::hypercall::TABLE {
        for _ in 0..10_000 {
            let args = [next(), next(), next(), next(), next(), next()];
            let _ = decode(spec.call, args);
        }
    }
}
