#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    qemu_qpl_fuzz::receive_abi(data);
});
