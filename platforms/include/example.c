/* Stream a reply from a GGUF model: cc example.c -Iplatforms/include -Ltarget/release -ledgespec */
#include <stdio.h>
#include "edgespec.h"

static bool print_piece(const char *piece, size_t len, void *user_data) {
    (void)user_data;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return true; /* false stops the generation */
}

int main(int argc, char **argv) {
    EdgespecModel *model;
    EdgespecSession *session;
    if (argc < 2 || edgespec_model_load(argv[1], NULL, &model) != EDGESPEC_STATUS_OK ||
        edgespec_session_create(model, &session) != EDGESPEC_STATUS_OK) {
        fprintf(stderr, "error: %s\n", argc < 2 ? "usage: example MODEL.gguf" : edgespec_last_error());
        return 1;
    }
    EdgespecGenerateParams params = edgespec_generate_params_default();
    params.max_tokens = 64;
    if (edgespec_chat(session, "Write a haiku about the sea.", &params, print_piece, NULL) != EDGESPEC_STATUS_OK)
        fprintf(stderr, "error: %s\n", edgespec_last_error());
    edgespec_session_free(session);
    edgespec_model_free(model);
    return 0;
}
