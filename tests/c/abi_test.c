/*
 * The C ABI from C: compiled with the system C compiler against libedgespec (static and shared)
 * by tests/c_abi.rs, which writes the tiny model this program loads.
 *
 * usage: abi_test MODEL.gguf MALFORMED.gguf MISSING.gguf
 *
 * It streams a generation through the callback, stops one from the callback and one from
 * another thread, runs every strategy the library reports (implemented ones must reproduce
 * plain decoding's text; the others must fail cleanly with UNSUPPORTED), checks the statistics,
 * and walks the error paths (missing file, malformed GGUF, NULL pointers, invalid UTF-8, bad
 * parameters, a busy session, use after cancel). Exits 0 when every check holds.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "edgespec.h"

static int failures = 0;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__,       \
                    __LINE__, #cond, edgespec_last_error());                               \
            failures++;                                                                    \
        }                                                                                  \
    } while (0)

#define CHECK_STATUS(call, want)                                                           \
    do {                                                                                   \
        EdgespecStatus got_ = (call);                                                      \
        if (got_ != (want)) {                                                              \
            fprintf(stderr, "%s:%d: %s returned %d (%s), want %d (%s); last error: %s\n",  \
                    __FILE__, __LINE__, #call, (int)got_, edgespec_status_name(got_),     \
                    (int)(want), edgespec_status_name(want), edgespec_last_error());      \
            failures++;                                                                    \
        }                                                                                  \
    } while (0)

/* ---- a callback that collects the streamed text ---- */

typedef struct {
    char text[8192];
    size_t len;
    int pieces;
    int stop_after;             /* return false on this piece (0: never) */
    EdgespecSession *session;   /* for the re-entrancy checks */
    int reentrancy_checked;
    /* cancel from another thread */
    int signal_at;              /* piece at which the canceller is woken (0: never) */
    atomic_int woken;
    atomic_int cancelled;
} Collector;

static void collector_init(Collector *c) {
    memset(c, 0, sizeof *c);
    atomic_init(&c->woken, 0);
    atomic_init(&c->cancelled, 0);
}

static bool collect(const char *piece, size_t len, void *user_data) {
    Collector *c = user_data;
    if (strlen(piece) != len) failures++, fprintf(stderr, "piece length %zu != strlen\n", len);
    if (c->len + len < sizeof c->text) {
        memcpy(c->text + c->len, piece, len);
        c->len += len;
        c->text[c->len] = 0;
    }
    c->pieces++;
    if (c->session && !c->reentrancy_checked) {
        /* The session is busy: a second call on it is refused, not raced. */
        EdgespecStats st;
        c->reentrancy_checked = 1;
        CHECK_STATUS(edgespec_generate(c->session, "x", NULL, NULL, NULL), EDGESPEC_STATUS_INVALID_ARGUMENT);
        CHECK(strstr(edgespec_last_error(), "busy") != NULL);
        CHECK_STATUS(edgespec_session_stats(c->session, &st), EDGESPEC_STATUS_INVALID_ARGUMENT);
    }
    if (c->signal_at && c->pieces == c->signal_at) {
        atomic_store(&c->woken, 1);
        /* Keep generating until the other thread has cancelled. */
        while (!atomic_load(&c->cancelled)) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }
    return !(c->stop_after && c->pieces == c->stop_after);
}

typedef struct {
    EdgespecSession *session;
    Collector *collector;
} CancelJob;

static void *canceller(void *arg) {
    CancelJob *job = arg;
    while (!atomic_load(&job->collector->woken)) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    edgespec_cancel(job->session);
    atomic_store(&job->collector->cancelled, 1);
    return NULL;
}

static void *fail_on_other_thread(void *arg) {
    EdgespecModel *m = NULL;
    (void)arg;
    if (edgespec_model_load(NULL, NULL, &m) != EDGESPEC_STATUS_INVALID_ARGUMENT) failures++;
    return NULL;
}

static EdgespecGenerateParams greedy(uint32_t max_tokens) {
    EdgespecGenerateParams p = edgespec_generate_params_default();
    p.max_tokens = max_tokens;
    p.strategy = EDGESPEC_STRATEGY_PLAIN; /* the baseline; the default is auto */
    p.sampling = edgespec_sampling_params_greedy();
    return p;
}

static void check_stats_sane(const EdgespecStats *st, uint32_t max_tokens) {
    CHECK(st->generated_tokens >= 1 && st->generated_tokens <= max_tokens);
    CHECK(st->forward_passes >= 1);
    CHECK(st->accepted_tokens <= st->drafted_tokens);
    CHECK(st->acceptance_rate >= 0.0 && st->acceptance_rate <= 1.0);
    CHECK(st->prefill_s >= 0.0 && st->decode_s >= 0.0);
    CHECK(st->prefill_tokens_per_s >= 0.0 && st->decode_tokens_per_s >= 0.0);
    CHECK(st->draft_s >= 0.0 && st->verify_s >= 0.0);
    CHECK(st->mean_accepted_per_pass >= 1.0 - 1e-9);
    CHECK(st->context_used <= st->context_size);
    CHECK(!st->has_energy && isnan(st->energy_j) && isnan(st->tokens_per_j));
    CHECK(st->stop_reason >= EDGESPEC_STOP_REASON_END_OF_GENERATION &&
          st->stop_reason <= EDGESPEC_STOP_REASON_CANCELLED);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL.gguf MALFORMED.gguf MISSING.gguf\n", argv[0]);
        return 2;
    }
    const char *model_path = argv[1], *bad_path = argv[2], *missing_path = argv[3];

    /* ---- version, build info, strategies ---- */
    CHECK(strlen(edgespec_version()) > 0);
    CHECK(strstr(edgespec_build_info(), edgespec_version()) != NULL);
    CHECK(edgespec_abi_version() == EDGESPEC_HEADER_ABI_VERSION);
    CHECK(strcmp(edgespec_status_name(EDGESPEC_STATUS_OK), "ok") == 0);
    CHECK(strcmp(edgespec_status_name(12345), "unknown status") == 0);
    int n_strategies = edgespec_strategy_count();
    CHECK(n_strategies >= 6);
    CHECK(strcmp(edgespec_strategy_name(EDGESPEC_STRATEGY_PLAIN), "plain") == 0);
    CHECK(strcmp(edgespec_strategy_name(EDGESPEC_STRATEGY_LOOKUP), "lookup") == 0);
    CHECK(edgespec_strategy_name(-1) == NULL && edgespec_strategy_name(n_strategies) == NULL);
    CHECK(edgespec_strategy_is_implemented(EDGESPEC_STRATEGY_PLAIN));
    CHECK(edgespec_generate_params_default().strategy == EDGESPEC_STRATEGY_AUTO);
    int32_t id = -1;
    CHECK_STATUS(edgespec_strategy_from_name("self-spec", &id), EDGESPEC_STATUS_OK);
    CHECK(id == EDGESPEC_STRATEGY_SELF_SPEC);
    CHECK_STATUS(edgespec_strategy_from_name("warp-drive", &id), EDGESPEC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(edgespec_strategy_from_name(NULL, &id), EDGESPEC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(edgespec_strategy_from_name("plain", NULL), EDGESPEC_STATUS_INVALID_ARGUMENT);

    /* ---- loading: the error paths ---- */
    EdgespecModel *model = (EdgespecModel *)&failures; /* must be overwritten with NULL */
    CHECK_STATUS(edgespec_model_load(missing_path, NULL, &model), EDGESPEC_STATUS_IO);
    CHECK(model == NULL);
    CHECK(strstr(edgespec_last_error(), "missing") != NULL); /* the message names the file */
    CHECK_STATUS(edgespec_model_load(bad_path, NULL, &model), EDGESPEC_STATUS_FORMAT);
    CHECK(model == NULL);
    CHECK_STATUS(edgespec_model_load(NULL, NULL, &model), EDGESPEC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(edgespec_model_load(model_path, NULL, NULL), EDGESPEC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(edgespec_model_load("bad\xff\xfeutf8.gguf", NULL, &model), EDGESPEC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(edgespec_last_error(), "UTF-8") != NULL);
    EdgespecModelParams mp = edgespec_model_params_default();
    mp.memory_budget_bytes = 1024; /* not even the weights fit */
    CHECK_STATUS(edgespec_model_load(model_path, &mp, &model), EDGESPEC_STATUS_OUT_OF_MEMORY);
    CHECK(model == NULL);
    mp = edgespec_model_params_default();
    mp.kv_type = 3; /* 0 f16, 1 f32, 2 q8_0 */
    CHECK_STATUS(edgespec_model_load(model_path, &mp, &model), EDGESPEC_STATUS_INVALID_ARGUMENT);
    CHECK(model == NULL);
    mp.kv_type = 2; /* the tiny model's 16-value heads are not whole Q8_0 blocks */
    mp.n_ctx = 64;
    CHECK_STATUS(edgespec_model_load(model_path, &mp, &model), EDGESPEC_STATUS_OK);
    {
        EdgespecSession *q8 = (EdgespecSession *)&failures;
        CHECK_STATUS(edgespec_session_create(model, &q8), EDGESPEC_STATUS_INVALID_ARGUMENT);
        CHECK(q8 == NULL);
        CHECK(strstr(edgespec_last_error(), "multiples of 32") != NULL);
    }
    edgespec_model_free(model);
    model = NULL;

    /* The last error is per thread: a failure elsewhere does not replace ours. */
    {
        char before[512];
        snprintf(before, sizeof before, "%s", edgespec_last_error());
        pthread_t t;
        pthread_create(&t, NULL, fail_on_other_thread, NULL);
        pthread_join(t, NULL);
        CHECK(strcmp(before, edgespec_last_error()) == 0);
    }

    /* ---- loading for real ---- */
    mp = edgespec_model_params_default();
    mp.n_threads = 2;
    mp.n_ctx = 128;
    CHECK_STATUS(edgespec_model_load(model_path, &mp, &model), EDGESPEC_STATUS_OK);
    if (!model) {
        fprintf(stderr, "cannot go on without the model\n");
        return 1;
    }
    CHECK(edgespec_model_context_size(model) == 128);
    CHECK(edgespec_model_n_vocab(model) == 259);
    CHECK(edgespec_model_n_vocab(NULL) == 0);

    /* ---- tokenize / detokenize ---- */
    size_t n = 0;
    uint32_t toks[64];
    CHECK_STATUS(edgespec_tokenize(model, "hello", false, false, NULL, 0, &n), EDGESPEC_STATUS_OK);
    CHECK(n == 5); /* byte-level vocabulary without merges */
    CHECK_STATUS(edgespec_tokenize(model, "hello", false, false, toks, 2, &n), EDGESPEC_STATUS_INVALID_ARGUMENT);
    CHECK(n == 5);
    CHECK_STATUS(edgespec_tokenize(model, "hello<|im_end|>", false, true, toks, 64, &n), EDGESPEC_STATUS_OK);
    CHECK(n == 6 && toks[5] == 258);
    char text[64];
    size_t len = 0;
    CHECK_STATUS(edgespec_detokenize(model, toks, 5, false, text, sizeof text, &len), EDGESPEC_STATUS_OK);
    CHECK(len == 5 && strcmp(text, "hello") == 0);
    CHECK_STATUS(edgespec_detokenize(model, toks, 5, false, text, 5, &len), EDGESPEC_STATUS_INVALID_ARGUMENT);
    uint32_t bad_tok = 100000;
    CHECK_STATUS(edgespec_detokenize(model, &bad_tok, 1, false, text, sizeof text, &len),
                 EDGESPEC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(edgespec_detokenize(model, NULL, 3, false, text, sizeof text, &len), EDGESPEC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(edgespec_tokenize(NULL, "hello", false, false, toks, 64, &n), EDGESPEC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(edgespec_tokenize(model, "\xc3\x28", false, false, toks, 64, &n), EDGESPEC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(edgespec_tokenize(model, NULL, false, false, toks, 64, &n), EDGESPEC_STATUS_INVALID_ARGUMENT);

    /* ---- a session ---- */
    EdgespecSession *session = NULL;
    CHECK_STATUS(edgespec_session_create(NULL, &session), EDGESPEC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(edgespec_session_create(model, NULL), EDGESPEC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(edgespec_session_create(model, &session), EDGESPEC_STATUS_OK);
    if (!session) return 1;
    EdgespecStats st;
    CHECK_STATUS(edgespec_session_stats(session, &st), EDGESPEC_STATUS_NOT_FOUND);

    /* Stream a generation. */
    const uint32_t max_tokens = 24;
    EdgespecGenerateParams gp = greedy(max_tokens);
    static Collector plain, c;
    collector_init(&plain);
    CHECK_STATUS(edgespec_generate(session, "hello world", &gp, collect, &plain), EDGESPEC_STATUS_OK);
    CHECK(plain.pieces >= 8); /* this model and prompt do not end early */
    CHECK_STATUS(edgespec_session_stats(session, &st), EDGESPEC_STATUS_OK);
    check_stats_sane(&st, max_tokens);
    CHECK(st.strategy == EDGESPEC_STRATEGY_PLAIN);
    CHECK(st.prompt_tokens == 11);
    CHECK(st.drafted_tokens == 0 && st.accepted_tokens == 0);
    CHECK(st.context_size == 128);
    CHECK(st.stop_reason == EDGESPEC_STOP_REASON_MAX_TOKENS || st.stop_reason == EDGESPEC_STOP_REASON_END_OF_GENERATION);
    uint32_t used = 0;
    CHECK_STATUS(edgespec_session_context_used(session, &used), EDGESPEC_STATUS_OK);
    CHECK(used == st.context_used && used == st.prompt_tokens + st.generated_tokens);
    printf("plain: %d pieces, %llu tokens, %.1f tok/s: \"%s\"\n", plain.pieces,
           (unsigned long long)st.generated_tokens, st.decode_tokens_per_s, plain.text);

    /* Same settings from a fresh context give the same text. */
    CHECK_STATUS(edgespec_session_reset(session), EDGESPEC_STATUS_OK);
    collector_init(&c);
    c.session = session; /* checks that calls from inside the callback are refused */
    CHECK_STATUS(edgespec_generate(session, "hello world", &gp, collect, &c), EDGESPEC_STATUS_OK);
    CHECK(c.reentrancy_checked && strcmp(c.text, plain.text) == 0);

    /* Stop from the callback: OK, stop reason cancelled, nothing streamed after. */
    CHECK_STATUS(edgespec_session_reset(session), EDGESPEC_STATUS_OK);
    collector_init(&c);
    c.stop_after = 3;
    CHECK_STATUS(edgespec_generate(session, "hello world", &gp, collect, &c), EDGESPEC_STATUS_OK);
    CHECK(c.pieces == 3);
    CHECK(strncmp(c.text, plain.text, c.len) == 0);
    CHECK_STATUS(edgespec_session_stats(session, &st), EDGESPEC_STATUS_OK);
    CHECK(st.stop_reason == EDGESPEC_STOP_REASON_CANCELLED);
    CHECK(st.generated_tokens >= 3 && st.generated_tokens < max_tokens);

    /* Every strategy: the implemented ones give plain decoding's text, the others UNSUPPORTED. */
    for (int32_t s = 0; s < n_strategies; s++) {
        const char *name = edgespec_strategy_name(s);
        CHECK(name != NULL);
        CHECK_STATUS(edgespec_session_reset(session), EDGESPEC_STATUS_OK);
        EdgespecGenerateParams sp = greedy(max_tokens);
        sp.strategy = s;
        collector_init(&c);
        EdgespecStatus status = edgespec_generate(session, "hello world", &sp, collect, &c);
        if ((strcmp(name, "heads") == 0 || strcmp(name, "eagle") == 0) && status == EDGESPEC_STATUS_NOT_FOUND) {
            /* Draft heads and the eagle drafter are trained per model by `edgespec tune`; without
               them, a clear error. */
            CHECK(strstr(edgespec_last_error(), "edgespec tune") != NULL);
            CHECK(c.pieces == 0);
            printf("strategy %-10s needs `edgespec tune` first (no trained drafter): refused\n", name);
        } else if (edgespec_strategy_is_implemented(s)) {
            CHECK_STATUS(status, EDGESPEC_STATUS_OK);
            CHECK(strcmp(c.text, plain.text) == 0);
            CHECK_STATUS(edgespec_session_stats(session, &st), EDGESPEC_STATUS_OK);
            check_stats_sane(&st, max_tokens);
            CHECK(st.strategy == s);
            printf("strategy %-10s ok: %llu tokens in %llu passes, drafted %llu, accepted %llu\n", name,
                   (unsigned long long)st.generated_tokens, (unsigned long long)st.forward_passes,
                   (unsigned long long)st.drafted_tokens, (unsigned long long)st.accepted_tokens);
        } else {
            CHECK_STATUS(status, EDGESPEC_STATUS_UNSUPPORTED);
            CHECK(strstr(edgespec_last_error(), name) != NULL);
            CHECK(c.pieces == 0);
            printf("strategy %-10s unsupported: %s\n", name, edgespec_last_error());
            CHECK_STATUS(edgespec_session_stats(session, &st), EDGESPEC_STATUS_NOT_FOUND);
        }
    }
    gp.strategy = n_strategies + 100;
    CHECK_STATUS(edgespec_generate(session, "x", &gp, collect, &c), EDGESPEC_STATUS_INVALID_ARGUMENT);
    gp.strategy = EDGESPEC_STRATEGY_PLAIN;

    /* Cancel from another thread. */
    CHECK_STATUS(edgespec_session_reset(session), EDGESPEC_STATUS_OK);
    collector_init(&c);
    c.signal_at = 4;
    CancelJob job = {session, &c};
    pthread_t t;
    pthread_create(&t, NULL, canceller, &job);
    CHECK_STATUS(edgespec_generate(session, "hello world", &gp, collect, &c), EDGESPEC_STATUS_CANCELLED);
    pthread_join(t, NULL);
    CHECK(c.pieces == 4);
    CHECK_STATUS(edgespec_session_stats(session, &st), EDGESPEC_STATUS_OK);
    CHECK(st.stop_reason == EDGESPEC_STOP_REASON_CANCELLED && st.generated_tokens < max_tokens);

    /* Use after cancel: the session goes on, continuing its context. */
    CHECK_STATUS(edgespec_session_context_used(session, &used), EDGESPEC_STATUS_OK);
    uint32_t used_after_cancel = used;
    collector_init(&c);
    CHECK_STATUS(edgespec_generate(session, " more", &gp, collect, &c), EDGESPEC_STATUS_OK);
    CHECK(c.pieces >= 1);
    CHECK_STATUS(edgespec_session_context_used(session, &used), EDGESPEC_STATUS_OK);
    CHECK(used > used_after_cancel);
    /* A cancel while idle does not cancel the next generation. */
    edgespec_cancel(session);
    edgespec_cancel(NULL);
    collector_init(&c);
    CHECK_STATUS(edgespec_session_reset(session), EDGESPEC_STATUS_OK);
    CHECK_STATUS(edgespec_generate(session, "hello world", &gp, collect, &c), EDGESPEC_STATUS_OK);
    CHECK(strcmp(c.text, plain.text) == 0);

    /* ---- generation: the error paths ---- */
    CHECK_STATUS(edgespec_generate(NULL, "hi", &gp, collect, &c), EDGESPEC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(edgespec_generate(session, NULL, &gp, collect, &c), EDGESPEC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(edgespec_generate(session, "caf\xe9", &gp, collect, &c), EDGESPEC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(edgespec_last_error(), "UTF-8") != NULL);
    /* Refused before it started: the last generation's figures stay. */
    CHECK_STATUS(edgespec_session_stats(session, &st), EDGESPEC_STATUS_OK);
    CHECK_STATUS(edgespec_session_stats(session, NULL), EDGESPEC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(edgespec_session_stats(NULL, &st), EDGESPEC_STATUS_INVALID_ARGUMENT);
    EdgespecGenerateParams bad = gp;
    bad.sampling.top_p = 0.0f;
    CHECK_STATUS(edgespec_generate(session, "hi", &bad, collect, &c), EDGESPEC_STATUS_INVALID_ARGUMENT);
    bad = gp;
    bad.max_tokens = 0;
    CHECK_STATUS(edgespec_generate(session, "hi", &bad, collect, &c), EDGESPEC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(edgespec_session_reset(session), EDGESPEC_STATUS_OK);
    CHECK_STATUS(edgespec_generate(session, "", &gp, collect, &c), EDGESPEC_STATUS_INVALID_ARGUMENT);
    char long_prompt[301];
    memset(long_prompt, 'a', 300);
    long_prompt[300] = 0;
    CHECK_STATUS(edgespec_generate(session, long_prompt, &gp, collect, &c), EDGESPEC_STATUS_CONTEXT_OVERFLOW);
    CHECK_STATUS(edgespec_session_reset(NULL), EDGESPEC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(edgespec_session_context_used(session, NULL), EDGESPEC_STATUS_INVALID_ARGUMENT);
    /* No callback, default parameters: fine. */
    CHECK_STATUS(edgespec_generate(session, "hello", NULL, NULL, NULL), EDGESPEC_STATUS_OK);

    /* ---- chat turns with the model's template ---- */
    CHECK_STATUS(edgespec_session_set_system(session, "You are terse."), EDGESPEC_STATUS_OK);
    collector_init(&c);
    CHECK_STATUS(edgespec_chat(session, "hi", &gp, collect, &c), EDGESPEC_STATUS_OK);
    CHECK_STATUS(edgespec_session_stats(session, &st), EDGESPEC_STATUS_OK);
    uint64_t first_prompt = st.prompt_tokens;
    CHECK(first_prompt > 2);
    collector_init(&c);
    CHECK_STATUS(edgespec_chat(session, "again", &gp, collect, &c), EDGESPEC_STATUS_OK);
    CHECK_STATUS(edgespec_session_stats(session, &st), EDGESPEC_STATUS_OK);
    CHECK(st.prompt_tokens < st.context_used - st.generated_tokens); /* only the new turn is fed */
    CHECK_STATUS(edgespec_chat(session, "\xff", &gp, collect, &c), EDGESPEC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(edgespec_session_set_system(session, NULL), EDGESPEC_STATUS_OK);
    CHECK_STATUS(edgespec_session_set_system(session, "\xff"), EDGESPEC_STATUS_INVALID_ARGUMENT);

    /* ---- a model read into memory gives the same text; freeing order does not matter ---- */
    EdgespecModelParams rp = mp;
    rp.use_mmap = false;
    rp.use_mlock = true; /* may be refused by RLIMIT_MEMLOCK: then OUT_OF_MEMORY, cleanly */
    EdgespecModel *in_ram = NULL;
    EdgespecStatus ls = edgespec_model_load(model_path, &rp, &in_ram);
    CHECK(ls == EDGESPEC_STATUS_OK || ls == EDGESPEC_STATUS_OUT_OF_MEMORY);
    if (ls != EDGESPEC_STATUS_OK) {
        rp.use_mlock = false;
        CHECK_STATUS(edgespec_model_load(model_path, &rp, &in_ram), EDGESPEC_STATUS_OK);
    }
    EdgespecSession *s2 = NULL;
    CHECK_STATUS(edgespec_session_create(in_ram, &s2), EDGESPEC_STATUS_OK);
    edgespec_model_free(in_ram); /* the session keeps what it needs */
    collector_init(&c);
    CHECK_STATUS(edgespec_generate(s2, "hello world", &gp, collect, &c), EDGESPEC_STATUS_OK);
    CHECK(strcmp(c.text, plain.text) == 0);
    edgespec_session_free(s2);

    edgespec_session_free(session);
    edgespec_model_free(model);
    edgespec_session_free(NULL);
    edgespec_model_free(NULL);

    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("all C ABI checks passed\n");
    return 0;
}
