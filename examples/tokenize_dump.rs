//! Differential testing against llama.cpp: tokenize length-prefixed strings and print the ids in
//! exactly the format of `tools/llamacpp_tokenize.cpp`, so the two outputs can be diffed.
//!
//! ```text
//! cargo run --release --example tokenize_dump -- MODEL.gguf STRINGS.bin > ours.txt
//! ```

use edgespec::gguf::GgufFile;
use edgespec::tokenizer::Tokenizer;

fn main() -> edgespec::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(model), Some(strings)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: tokenize_dump MODEL.gguf STRINGS.bin");
        std::process::exit(2);
    };
    let tok = Tokenizer::from_gguf(&GgufFile::open(model)?)?;
    let data = std::fs::read(strings).map_err(|e| edgespec::Error::io(strings, e))?;
    let mut rest = data.as_slice();
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = u32::from_le_bytes(*len) as usize;
        let Some((bytes, tail)) = tail.split_at_checked(len) else { break };
        rest = tail;
        let text = String::from_utf8_lossy(bytes);
        for (add_special, parse_special) in [(false, false), (false, true), (true, true)] {
            let mut line = format!("{} {}", add_special as u8, parse_special as u8);
            for id in tok.encode(&text, add_special, parse_special) {
                line.push_str(&format!(" {id}"));
            }
            println!("{line}");
        }
    }
    Ok(())
}
