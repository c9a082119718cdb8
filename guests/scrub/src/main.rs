//! `scrub`: checks that a destroyed domain's memory is scrubbed before reuse.
//!
//! With `arg == 1` it fills all its RAM beyond its image and stack with a secret pattern and
//! ends; with `arg == 0` it scans the same RAM and reports whether every word is zero (the
//! `destroy-scrub` smoke scenario runs the two, in that order, on the same frames).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use mica_rt::{memory, println, BootInfo};

/// What the first run leaves behind: a recognisable, non-zero word.
const SECRET: u64 = 0x005E_C2E7_005E_C2E7;

fn main(info: BootInfo) -> ! {
    let range = memory::free_ram();
    let Some(words) = memory::take_free_ram() else {
        println!(
            "scrub: no free RAM beyond the image ({:#x}..{:#x})",
            range.start, range.end
        );
        mica_rt::exit()
    };
    let kib = words.len() * 8 / 1024;
    if info.arg == 1 {
        words.fill(SECRET);
        // The words are never read again here; make sure the stores are not elided.
        core::hint::black_box(&*words);
        println!("scrub: secret written ({kib} KiB)");
    } else {
        match words.iter().position(|w| *w != 0) {
            None => println!("scrub: memory is clean ({kib} KiB checked)"),
            Some(i) => println!("scrub: FOUND OLD DATA at {:#x}", range.start + 8 * i as u64),
        }
    }
    mica_rt::exit()
}

mica_rt::entry!(main);
