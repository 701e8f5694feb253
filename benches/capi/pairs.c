/* Instructions per malloc+free pair through the C ABI: run under callgrind with two loop
 * counts and divide the difference, so start-up and exit cancel out:
 *   gcc -O2 -fno-builtin benches/capi/pairs.c -o target/capi-bench/pairs
 *   for n in 10000 30000; do LD_PRELOAD=LIB valgrind --tool=callgrind \
 *       --callgrind-out-file=/dev/null target/capi-bench/pairs $n 32; done
 *   -> (Ir(30000) - Ir(10000)) / 20000 */
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int n = atoi(argv[1]);
    size_t size = (size_t)atoi(argv[2]);
    void *volatile keep;
    for (int i = 0; i < n; i++) {
        void *p = malloc(size);
        keep = p;
        free(p);
    }
    (void)keep;
    return 0;
}
