/* Stream a chat reply: cc example.c -Iplatforms/include -Ltarget/release -ledgespec && ./a.out MODEL.gguf */
#include <stdio.h>
#include "edgespec.h"

static bool on_piece(const char *piece, size_t len, void *user_data) {
    (void)user_data;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return true; /* false stops the generation */
}

int main(int argc, char **argv) {
    EdgespecModel *model = NULL;
    EdgespecSession *session = NULL;
    EdgespecGenerateParams params = edgespec_generate_params_default();
    params.max_tokens = 64;
    edgespec_strategy_from_name("lookup", &params.strategy); /* speculative, same text as "plain" */
    int ok = argc == 2 && edgespec_model_load(argv[1], NULL, &model) == EDGESPEC_STATUS_OK &&
             edgespec_session_create(model, &session) == EDGESPEC_STATUS_OK &&
             edgespec_chat(session, "Write a haiku about the sea.", &params, on_piece, NULL) == EDGESPEC_STATUS_OK;
    if (!ok) fprintf(stderr, "error: %s\n", argc == 2 ? edgespec_last_error() : "usage: example MODEL.gguf");
    printf("\n");
    edgespec_session_free(session);
    edgespec_model_free(model);
    return ok ? 0 : 1;
}
