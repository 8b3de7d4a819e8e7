// Tokenize strings with llama.cpp, for tests/data/tokenizer_llamacpp_<model>.json.
//
// Input (argv[2]): a sequence of strings, each a little-endian u32 byte length then the bytes.
// Output (stdout): for each string, three lines "ADD_SPECIAL PARSE_SPECIAL id id ...", for the
// modes (0,0), (0,1), (1,1). Build against a llama.cpp build tree, e.g.:
//   g++ -O2 -std=c++17 tools/llamacpp_tokenize.cpp -I$LLAMA/include -I$LLAMA/ggml/include \
//       $LLAMA/build/src/libllama.a $LLAMA/build/ggml/src/libggml*.a -lpthread -o llamacpp_tokenize
// and run through tools/llamacpp_reference.py.
#include "llama.h"

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

int main(int argc, char ** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL.gguf STRINGS.bin\n", argv[0]);
        return 2;
    }
    llama_backend_init();
    llama_log_set([](ggml_log_level, const char *, void *) {}, nullptr);
    llama_model_params params = llama_model_default_params();
    params.vocab_only = true;
    llama_model * model = llama_model_load_from_file(argv[1], params);
    if (model == nullptr) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    std::ifstream in(argv[2], std::ios::binary);
    const bool modes[3][2] = {{false, false}, {false, true}, {true, true}};
    uint32_t len = 0;
    while (in.read(reinterpret_cast<char *>(&len), sizeof(len))) {
        std::string text(len, '\0');
        in.read(&text[0], len);
        for (const auto & mode : modes) {
            std::vector<llama_token> tokens(text.size() * 4 + 16);
            const int n = llama_tokenize(vocab, text.data(), (int32_t) text.size(), tokens.data(),
                                         (int32_t) tokens.size(), mode[0], mode[1]);
            if (n < 0) {
                fprintf(stderr, "token buffer too small\n");
                return 1;
            }
            printf("%d %d", mode[0] ? 1 : 0, mode[1] ? 1 : 0);
            for (int i = 0; i < n; i++) {
                printf(" %d", tokens[i]);
            }
            printf("\n");
        }
    }
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
