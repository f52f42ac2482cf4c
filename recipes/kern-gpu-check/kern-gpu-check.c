/*
 * kern-gpu-check: can this container use the GPU the host gives it?
 *
 *   kern-gpu-check [CUDA_VERSION]      (default: $KERN_CUDA_VERSION, set in GPU images)
 *
 * Prints exactly one line on stdout and exits with:
 *   0  OK: driver D (CUDA C needs >= M): N GPU(s): name, memory MiB; ...
 *   2  no GPU visible: why (no kernel module, libcuda/NVML not injected, no devices)
 *   3  driver/library version mismatch: kernel module K, user-space library U
 *   4  driver too old: D < M needed by CUDA C
 *  64  usage error
 * Details that do not fit the line (dlerror text) go to stderr.
 *
 * libcuda.so.1 and libnvidia-ml.so.1 are opened with dlopen, never linked: the NVIDIA
 * container runtime injects them from the host, and the package must install on hosts
 * without them. nvidia-smi is not used. $KERN_GPU_ROOT (default "") is prepended to
 * /proc/driver/nvidia/version, so tests can use a fake root.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { EXIT_OK = 0, EXIT_NO_GPU = 2, EXIT_MISMATCH = 3, EXIT_TOO_OLD = 4, EXIT_USAGE = 64 };

/* The few NVML and CUDA driver API types used, declared here: no headers needed. */
typedef int nvmlReturn_t;
typedef struct nvmlDevice_st *nvmlDevice_t;
typedef struct {
    unsigned long long total, free, used;
} nvmlMemory_t;
#define NVML_SUCCESS 0
#define NVML_ERROR_LIB_RM_VERSION_MISMATCH 18
#define CUDA_ERROR_NO_DEVICE 100

/*
 * The minimum Linux driver for each CUDA toolkit release, from the "CUDA Toolkit and
 * Corresponding Driver Versions" table (Toolkit Driver Version, Linux x86_64, the GA
 * release of each minor version) in NVIDIA's CUDA Toolkit release notes:
 * https://docs.nvidia.com/cuda/cuda-toolkit-release-notes/index.html
 * (11.0's GA is 11.0.2; 12.7 was never released.) A minor version not listed here, such
 * as 13.1 and later, gets its major's floor (FLOORS below): add a row per new release.
 */
static const struct {
    int major, minor;
    const char *driver;
} MINIMUM[] = {
    {11, 0, "450.51.05"}, {11, 1, "455.23"},    {11, 2, "460.27.03"}, {11, 3, "465.19.01"},
    {11, 4, "470.42.01"}, {11, 5, "495.29.05"}, {11, 6, "510.39.01"}, {11, 7, "515.43.04"},
    {11, 8, "520.61.05"}, {12, 0, "525.60.13"}, {12, 1, "530.30.02"}, {12, 2, "535.54.03"},
    {12, 3, "545.23.06"}, {12, 4, "550.54.14"}, {12, 5, "555.42.02"}, {12, 6, "560.28.03"},
    {12, 8, "570.26"},    {12, 9, "575.51.03"}, {13, 0, "580.65.06"},
};

/*
 * The per-major floor: the driver a whole major version needs under CUDA's minor
 * version compatibility (same release notes, "CUDA Minor Version Compatibility").
 * The answer is the higher of the floor and the release's own entry above.
 */
static const struct {
    int major;
    const char *driver;
} FLOORS[] = {{11, "450.80.02"}, {12, "525.60.13"}, {13, "580.65.06"}};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Compare dotted numeric versions field by field ("570.26" == "570.26.0"). */
static int version_cmp(const char *a, const char *b)
{
    while (*a || *b) {
        char *end;
        unsigned long x = strtoul(a, &end, 10);
        a = (*end == '.') ? end + 1 : end;
        unsigned long y = strtoul(b, &end, 10);
        b = (*end == '.') ? end + 1 : end;
        if (x != y)
            return x < y ? -1 : 1;
    }
    return 0;
}

static int is_version(const char *s)
{
    if (!isdigit((unsigned char)*s))
        return 0;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s) && !(*s == '.' && isdigit((unsigned char)s[1])))
            return 0;
    return 1;
}

/* The minimum driver for a CUDA version such as "12.4" or "12.4.1"; NULL if unknown. */
static const char *minimum_driver(const char *cuda)
{
    int major = atoi(cuda), minor = -1;
    const char *dot = strchr(cuda, '.');
    if (dot)
        minor = atoi(dot + 1);
    const char *floor = NULL, *release = NULL;
    for (size_t i = 0; i < COUNT(FLOORS); i++)
        if (FLOORS[i].major == major)
            floor = FLOORS[i].driver;
    for (size_t i = 0; i < COUNT(MINIMUM); i++)
        if (MINIMUM[i].major == major && MINIMUM[i].minor == minor)
            release = MINIMUM[i].driver;
    if (!floor)
        return release;
    if (!release)
        return floor;
    return version_cmp(release, floor) > 0 ? release : floor;
}

/* Read the kernel module version from the "NVRM version:" line into out. */
static int module_version(const char *path, char *out, size_t size)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[512];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        if (strncmp(line, "NVRM version:", 13) != 0)
            continue;
        /* "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar ..." or the
         * open kernel module's "... Open Kernel Module for x86_64  550.54.15  Release ...":
         * the first token that is a dotted version. */
        for (char *tok = strtok(line + 13, " \t\n"); tok; tok = strtok(NULL, " \t\n"))
            if (is_version(tok) && strchr(tok, '.')) {
                snprintf(out, size, "%s", tok);
                found = 1;
                break;
            }
    }
    fclose(f);
    return found ? 0 : -2;
}

/* The version in the real file name of the library that holds symbol, as in
 * libnvidia-ml.so.550.90.07; "unknown" if it has none. */
static void library_file_version(void *symbol, char *out, size_t size)
{
    Dl_info info;
    char real[PATH_MAX];
    snprintf(out, size, "unknown");
    if (!symbol || !dladdr(symbol, &info) || !info.dli_fname || !realpath(info.dli_fname, real))
        return;
    const char *so = strstr(real, ".so.");
    if (so && is_version(so + 4) && strchr(so + 4, '.'))
        snprintf(out, size, "%s", so + 4);
}

static void *open_library(const char *name)
{
    void *handle = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!handle)
        fprintf(stderr, "kern-gpu-check: %s\n", dlerror());
    return handle;
}

static void *symbol(void *lib, const char *libname, const char *name)
{
    void *p = dlsym(lib, name);
    if (!p) {
        printf("no GPU visible: %s has no %s\n", libname, name);
        exit(EXIT_NO_GPU);
    }
    return p;
}

static int usage(void)
{
    fprintf(stderr, "usage: kern-gpu-check [CUDA_VERSION]   (default: $KERN_CUDA_VERSION)\n");
    return EXIT_USAGE;
}

int main(int argc, char **argv)
{
    if (argc > 2)
        return usage();
    if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: kern-gpu-check [CUDA_VERSION]   (default: $KERN_CUDA_VERSION)\n");
        return EXIT_OK;
    }
    const char *cuda = argc == 2 ? argv[1] : getenv("KERN_CUDA_VERSION");
    if (!cuda || !*cuda) {
        fprintf(stderr, "kern-gpu-check: no CUDA version: give one or set KERN_CUDA_VERSION\n");
        return usage();
    }
    if (!is_version(cuda)) {
        fprintf(stderr, "kern-gpu-check: %s is not a CUDA version such as 12.4\n", cuda);
        return usage();
    }
    const char *needed = minimum_driver(cuda);
    if (!needed) {
        fprintf(stderr, "kern-gpu-check: no minimum driver known for CUDA %s\n", cuda);
        return usage();
    }

    /* The kernel module the host loaded. */
    const char *root = getenv("KERN_GPU_ROOT");
    char path[PATH_MAX], module[64];
    snprintf(path, sizeof path, "%s/proc/driver/nvidia/version", root ? root : "");
    int got = module_version(path, module, sizeof module);
    if (got == -1) {
        printf("no GPU visible: no NVIDIA kernel module (%s not found)\n", path);
        return EXIT_NO_GPU;
    }
    if (got < 0) {
        printf("no GPU visible: no kernel module version in %s\n", path);
        return EXIT_NO_GPU;
    }

    /* The user-space libraries the container runtime injected. */
    void *cuda_lib = open_library("libcuda.so.1");
    if (!cuda_lib) {
        printf("no GPU visible: libcuda.so.1 not loadable (driver libraries not injected)\n");
        return EXIT_NO_GPU;
    }
    void *nvml = open_library("libnvidia-ml.so.1");
    if (!nvml) {
        printf("no GPU visible: libnvidia-ml.so.1 not loadable (driver libraries not injected)\n");
        return EXIT_NO_GPU;
    }
    int (*cuInit)(unsigned) = (int (*)(unsigned))symbol(cuda_lib, "libcuda.so.1", "cuInit");
    int (*cuDriverGetVersion)(int *) =
        (int (*)(int *))symbol(cuda_lib, "libcuda.so.1", "cuDriverGetVersion");
    const char *ml = "libnvidia-ml.so.1";
    nvmlReturn_t (*nvmlInit)(void) = (nvmlReturn_t(*)(void))symbol(nvml, ml, "nvmlInit_v2");
    nvmlReturn_t (*nvmlShutdown)(void) = (nvmlReturn_t(*)(void))symbol(nvml, ml, "nvmlShutdown");
    const char *(*nvmlErrorString)(nvmlReturn_t) =
        (const char *(*)(nvmlReturn_t))symbol(nvml, ml, "nvmlErrorString");
    nvmlReturn_t (*nvmlSystemGetDriverVersion)(char *, unsigned) =
        (nvmlReturn_t(*)(char *, unsigned))symbol(nvml, ml, "nvmlSystemGetDriverVersion");
    nvmlReturn_t (*nvmlDeviceGetCount)(unsigned *) =
        (nvmlReturn_t(*)(unsigned *))symbol(nvml, ml, "nvmlDeviceGetCount_v2");
    nvmlReturn_t (*nvmlDeviceGetHandleByIndex)(unsigned, nvmlDevice_t *) =
        (nvmlReturn_t(*)(unsigned, nvmlDevice_t *))symbol(nvml, ml,
                                                          "nvmlDeviceGetHandleByIndex_v2");
    nvmlReturn_t (*nvmlDeviceGetName)(nvmlDevice_t, char *, unsigned) =
        (nvmlReturn_t(*)(nvmlDevice_t, char *, unsigned))symbol(nvml, ml, "nvmlDeviceGetName");
    nvmlReturn_t (*nvmlDeviceGetMemoryInfo)(nvmlDevice_t, nvmlMemory_t *) =
        (nvmlReturn_t(*)(nvmlDevice_t, nvmlMemory_t *))symbol(nvml, ml,
                                                            "nvmlDeviceGetMemoryInfo");

    /* NVML against the kernel module: the same driver release, or nothing works. */
    char library[96] = "";
    nvmlReturn_t rc = nvmlInit();
    if (rc == NVML_ERROR_LIB_RM_VERSION_MISMATCH) {
        /* NVML may still say its own version; if not, its file name does. */
        if (nvmlSystemGetDriverVersion(library, sizeof library) != NVML_SUCCESS || !*library)
            library_file_version((void *)nvmlInit, library, sizeof library);
        printf("driver/library version mismatch: kernel module %s, user-space library %s\n",
               module, library);
        return EXIT_MISMATCH;
    }
    if (rc != NVML_SUCCESS) {
        printf("no GPU visible: NVML initialisation failed: %s\n", nvmlErrorString(rc));
        return EXIT_NO_GPU;
    }
    if (nvmlSystemGetDriverVersion(library, sizeof library) == NVML_SUCCESS &&
        strcmp(library, module) != 0) {
        printf("driver/library version mismatch: kernel module %s, user-space library %s\n",
               module, library);
        nvmlShutdown();
        return EXIT_MISMATCH;
    }

    unsigned count = 0;
    rc = nvmlDeviceGetCount(&count);
    if (rc != NVML_SUCCESS) {
        printf("no GPU visible: NVML cannot count devices: %s\n", nvmlErrorString(rc));
        nvmlShutdown();
        return EXIT_NO_GPU;
    }
    if (count == 0) {
        printf("no GPU visible: the driver sees no devices\n");
        nvmlShutdown();
        return EXIT_NO_GPU;
    }

    /* The CUDA driver API must come up too (CUDA_VISIBLE_DEVICES may hide every GPU). */
    int cu = cuInit(0), driver_cuda = 0;
    if (cu != 0) {
        if (cu == CUDA_ERROR_NO_DEVICE)
            printf("no GPU visible: CUDA sees no devices (cuInit: CUDA_ERROR_NO_DEVICE)\n");
        else
            printf("no GPU visible: cuInit failed with CUDA error %d\n", cu);
        nvmlShutdown();
        return EXIT_NO_GPU;
    }
    if (cuDriverGetVersion(&driver_cuda) == 0)
        fprintf(stderr, "kern-gpu-check: the driver supports CUDA up to %d.%d\n",
                driver_cuda / 1000, driver_cuda % 1000 / 10);

    if (version_cmp(module, needed) < 0) {
        printf("driver too old: %s < %s needed by CUDA %s\n", module, needed, cuda);
        nvmlShutdown();
        return EXIT_TOO_OLD;
    }

    /* Build the whole line first: it is printed only if every device answered. */
    char line[4096];
    size_t used = (size_t)snprintf(line, sizeof line, "OK: driver %s (CUDA %s needs >= %s): "
                                   "%u GPU%s: ", module, cuda, needed, count,
                                   count == 1 ? "" : "s");
    for (unsigned i = 0; i < count; i++) {
        nvmlDevice_t device;
        char name[96];
        nvmlMemory_t memory;
        if ((rc = nvmlDeviceGetHandleByIndex(i, &device)) != NVML_SUCCESS ||
            (rc = nvmlDeviceGetName(device, name, sizeof name)) != NVML_SUCCESS ||
            (rc = nvmlDeviceGetMemoryInfo(device, &memory)) != NVML_SUCCESS) {
            printf("no GPU visible: GPU %u does not answer: %s\n", i, nvmlErrorString(rc));
            nvmlShutdown();
            return EXIT_NO_GPU;
        }
        if (used < sizeof line)
            used += (size_t)snprintf(line + used, sizeof line - used, "%s%s, %llu MiB",
                                     i ? "; " : "", name, memory.total / (1024ULL * 1024ULL));
    }
    printf("%s\n", line);
    nvmlShutdown();
    return EXIT_OK;
}
