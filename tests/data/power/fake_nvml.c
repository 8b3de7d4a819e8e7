/* A stand-in for libnvidia-ml.so.1 with the NVML entry points edgespec's NVML meter loads, for
 * testing the dlopen/dlsym path and the unit handling on machines without an NVIDIA driver.
 * Two GPUs: gpu0 has an energy counter that advances 500 mJ per call from 100000 mJ; gpu1
 * answers NVML_ERROR_NOT_SUPPORTED, as pre-Volta GPUs do. */
#include <string.h>

static int devices[2] = {0, 1};
static unsigned long long calls = 0;
static int initialised = 0;

int nvmlInit_v2(void) { initialised = 1; return 0; }
int nvmlShutdown(void) { initialised = 0; return 0; }
int nvmlDeviceGetCount_v2(unsigned int *count) { *count = 2; return initialised ? 0 : 1; }
int nvmlDeviceGetHandleByIndex_v2(unsigned int index, void **device) {
    if (index > 1) return 2; /* NVML_ERROR_INVALID_ARGUMENT */
    *device = &devices[index];
    return 0;
}
int nvmlDeviceGetName(void *device, char *name, unsigned int length) {
    const char *n = (*(int *)device == 0) ? "Fake GPU Zero" : "Fake GPU One";
    if (length < strlen(n) + 1) return 7; /* NVML_ERROR_INSUFFICIENT_SIZE */
    strcpy(name, n);
    return 0;
}
int nvmlDeviceGetTotalEnergyConsumption(void *device, unsigned long long *energy) {
    if (*(int *)device != 0) return 3; /* NVML_ERROR_NOT_SUPPORTED */
    calls += 1;
    *energy = 100000ULL + 500ULL * calls;
    return 0;
}
const char *nvmlErrorString(int result) { return result == 3 ? "Not Supported" : "Fake error"; }
