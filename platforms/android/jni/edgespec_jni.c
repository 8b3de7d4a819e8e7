/*
 * JNI glue between dev.edgespec.Native (Kotlin) and the edgespec C ABI. Handles travel as jlong.
 * Text crosses as UTF-8 byte arrays, not jstring: JNI's "modified UTF-8" encodes characters
 * outside the BMP (emoji) as surrogate pairs, which is not valid UTF-8 for edgespec.
 */
#include <jni.h>
#include <stdlib.h>
#include <string.h>

#include "edgespec.h"

/* A NUL-terminated copy of a Java byte[] (NULL for a null array); free() it. */
static char *c_string(JNIEnv *env, jbyteArray bytes) {
    if (bytes == NULL) return NULL;
    jsize n = (*env)->GetArrayLength(env, bytes);
    char *s = malloc((size_t)n + 1);
    if (s == NULL) return NULL;
    (*env)->GetByteArrayRegion(env, bytes, 0, n, (jbyte *)s);
    s[n] = 0;
    return s;
}

JNIEXPORT jstring JNICALL Java_dev_edgespec_Native_lastError(JNIEnv *env, jclass cls) {
    (void)cls;
    return (*env)->NewStringUTF(env, edgespec_last_error()); /* messages are ASCII in practice */
}

JNIEXPORT jint JNICALL Java_dev_edgespec_Native_strategyId(JNIEnv *env, jclass cls, jbyteArray name) {
    (void)cls;
    char *s = c_string(env, name);
    int32_t id = -1;
    EdgespecStatus st = edgespec_strategy_from_name(s, &id);
    free(s);
    return st == EDGESPEC_STATUS_OK ? id : -1;
}

/* out[0] receives the model handle. Returns the status. */
JNIEXPORT jint JNICALL Java_dev_edgespec_Native_modelLoad(JNIEnv *env, jclass cls, jbyteArray path, jint threads,
                                                          jint ctx, jlong budget, jlongArray out) {
    (void)cls;
    char *p = c_string(env, path);
    EdgespecModelParams mp = edgespec_model_params_default();
    mp.n_threads = threads > 0 ? (uint32_t)threads : 0;
    mp.n_ctx = ctx > 0 ? (uint32_t)ctx : 0;
    mp.memory_budget_bytes = budget > 0 ? (uint64_t)budget : 0;
    EdgespecModel *m = NULL;
    EdgespecStatus st = edgespec_model_load(p, &mp, &m);
    free(p);
    jlong h = (jlong)(intptr_t)m;
    (*env)->SetLongArrayRegion(env, out, 0, 1, &h);
    return st;
}

JNIEXPORT void JNICALL Java_dev_edgespec_Native_modelFree(JNIEnv *env, jclass cls, jlong model) {
    (void)env, (void)cls;
    edgespec_model_free((EdgespecModel *)(intptr_t)model);
}

JNIEXPORT jint JNICALL Java_dev_edgespec_Native_sessionCreate(JNIEnv *env, jclass cls, jlong model, jlongArray out) {
    (void)cls;
    EdgespecSession *s = NULL;
    EdgespecStatus st = edgespec_session_create((EdgespecModel *)(intptr_t)model, &s);
    jlong h = (jlong)(intptr_t)s;
    (*env)->SetLongArrayRegion(env, out, 0, 1, &h);
    return st;
}

JNIEXPORT void JNICALL Java_dev_edgespec_Native_sessionFree(JNIEnv *env, jclass cls, jlong session) {
    (void)env, (void)cls;
    edgespec_session_free((EdgespecSession *)(intptr_t)session);
}

JNIEXPORT void JNICALL Java_dev_edgespec_Native_cancel(JNIEnv *env, jclass cls, jlong session) {
    (void)env, (void)cls;
    edgespec_cancel((const EdgespecSession *)(intptr_t)session);
}

JNIEXPORT jint JNICALL Java_dev_edgespec_Native_reset(JNIEnv *env, jclass cls, jlong session) {
    (void)env, (void)cls;
    return edgespec_session_reset((EdgespecSession *)(intptr_t)session);
}

typedef struct {
    JNIEnv *env;
    jobject sink;     /* dev.edgespec.PieceSink */
    jmethodID on_piece;
} Sink;

static bool forward_piece(const char *piece, size_t len, void *user_data) {
    Sink *s = user_data;
    JNIEnv *env = s->env;
    jbyteArray bytes = (*env)->NewByteArray(env, (jsize)len);
    if (bytes == NULL) return false; /* OutOfMemoryError pending: stop */
    (*env)->SetByteArrayRegion(env, bytes, 0, (jsize)len, (const jbyte *)piece);
    jboolean go_on = (*env)->CallBooleanMethod(env, s->sink, s->on_piece, bytes);
    (*env)->DeleteLocalRef(env, bytes); /* one local ref per piece would overflow the table */
    if ((*env)->ExceptionCheck(env)) return false; /* rethrown when the native call returns */
    return go_on == JNI_TRUE;
}

/* Generate (chat != 0: one chat turn). stats receives the figures in Native.STATS_* order. */
JNIEXPORT jint JNICALL Java_dev_edgespec_Native_generate(JNIEnv *env, jclass cls, jlong session, jbyteArray prompt,
                                                         jboolean chat, jint max_tokens, jint strategy,
                                                         jfloat temperature, jlong seed, jobject sink,
                                                         jdoubleArray stats) {
    (void)cls;
    char *p = c_string(env, prompt);
    EdgespecGenerateParams gp = edgespec_generate_params_default();
    if (max_tokens > 0) gp.max_tokens = (uint32_t)max_tokens;
    gp.strategy = strategy;
    gp.sampling.temperature = temperature;
    gp.sampling.seed = (uint64_t)seed;
    jclass sink_class = (*env)->GetObjectClass(env, sink);
    Sink s = {env, sink, (*env)->GetMethodID(env, sink_class, "onPiece", "([B)Z")};
    EdgespecSession *h = (EdgespecSession *)(intptr_t)session;
    EdgespecStatus st = chat ? edgespec_chat(h, p, &gp, forward_piece, &s)
                             : edgespec_generate(h, p, &gp, forward_piece, &s);
    free(p);
    EdgespecStats es;
    /* Only after a generation that ran: a failing stats call would replace the last error. */
    if ((st == EDGESPEC_STATUS_OK || st == EDGESPEC_STATUS_CANCELLED) &&
        edgespec_session_stats(h, &es) == EDGESPEC_STATUS_OK) {
        jdouble v[] = {es.strategy, es.stop_reason, (double)es.prompt_tokens, (double)es.generated_tokens,
                       (double)es.forward_passes, (double)es.drafted_tokens, (double)es.accepted_tokens,
                       es.prefill_tokens_per_s, es.decode_tokens_per_s, es.acceptance_rate,
                       es.has_energy ? es.energy_j : -1.0};
        (*env)->SetDoubleArrayRegion(env, stats, 0, (jsize)(sizeof v / sizeof v[0]), v);
    }
    return st;
}
