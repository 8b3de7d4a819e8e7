//! Fuzz the GGUF parser: any byte string must parse or give an error, never panic, and reading
//! back every value and tensor of an accepted file must stay in bounds.
#![no_main]

use edgespec::gguf::GgufFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::from_bytes(data.to_vec()) else { return };
    for (_, value) in file.metadata() {
        let _ = value.to_string();
        if let Some(array) = value.as_array() {
            for item in array.iter() {
                let _ = item.map(|v| v.to_string());
            }
            let _ = array.strings();
            let _ = array.f32s();
            let _ = array.ints();
        }
    }
    for t in file.tensors() {
        assert_eq!(file.tensor_data(t).len() as u64, t.n_bytes);
    }
    let _ = edgespec::model::ModelConfig::from_gguf(&file);
});
