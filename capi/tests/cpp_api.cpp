// The C++ side of the C ABI: every operator new/delete form (plain, array, sized,
// nothrow, aligned) lands in the allocator, and standard containers work across threads.
// Run with LD_PRELOAD=librpmalloc.so, or linked with librpmalloc.a. Exits 0 when every
// check passed.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "../include/rpmalloc.h"
#pragma weak rpmalloc_usable_size

static int failures;
#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                                    \
        }                                                                                  \
    } while (0)

static bool ours(const void *p) { return rpmalloc_usable_size(const_cast<void *>(p)) > 0; }

struct alignas(256) Wide {
    unsigned char bytes[300];
};

int main() {
    if (!rpmalloc_usable_size) {
        std::fprintf(stderr, "cpp_api: not running on librpmalloc\n");
        return 2;
    }
    // Plain, array, sized delete.
    int *one = new int(42);
    CHECK(ours(one) && *one == 42);
    delete one;
    char *many = new char[100000];
    CHECK(ours(many));
    std::memset(many, 1, 100000);
    delete[] many;
    ::operator delete(::operator new(24), 24);
    ::operator delete[](::operator new[](4000), 4000);
    // nothrow.
    void *n = ::operator new(128, std::nothrow);
    CHECK(n != nullptr && ours(n));
    ::operator delete(n, std::nothrow);
    n = ::operator new[](1 << 20, std::nothrow);
    CHECK(n != nullptr && ours(n));
    ::operator delete[](n, std::nothrow);
    // A nothrow new that cannot be met returns null.
    CHECK(::operator new(SIZE_MAX - 4096, std::nothrow) == nullptr);
    // Aligned: over-aligned types and explicit alignments.
    Wide *w = new Wide;
    CHECK(reinterpret_cast<std::uintptr_t>(w) % 256 == 0 && ours(w));
    delete w;
    Wide *ws = new Wide[7];
    CHECK(reinterpret_cast<std::uintptr_t>(ws) % 256 == 0);
    delete[] ws;
    for (std::size_t align = 16; align <= (1u << 22); align *= 4) {
        void *p = ::operator new(1000, std::align_val_t(align));
        CHECK(reinterpret_cast<std::uintptr_t>(p) % align == 0 && ours(p));
        ::operator delete(p, 1000, std::align_val_t(align));
        p = ::operator new[](70000, std::align_val_t(align), std::nothrow);
        CHECK(p != nullptr && reinterpret_cast<std::uintptr_t>(p) % align == 0);
        ::operator delete[](p, std::align_val_t(align), std::nothrow);
    }
    // Containers across threads: each thread builds maps and strings, hands them to the
    // next, which checks and destroys them.
    const int threads = 6;
    std::vector<std::map<int, std::string>> built(threads);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; t++)
        pool.emplace_back([&built, t] {
            for (int i = 0; i < 20000; i++) built[t][i] = std::string(i % 300, char('a' + t));
        });
    for (auto &th : pool) th.join();
    pool.clear();
    for (int t = 0; t < threads; t++)
        pool.emplace_back([&built, t, threads] {
            auto &m = built[(t + 1) % threads];
            std::size_t total = 0;
            for (auto &kv : m) total += kv.second.size();
            if (total != 20000 / 300 * (299 * 300 / 2) + (20000 % 300) * (20000 % 300 - 1) / 2)
                failures++;
            m.clear();
        });
    for (auto &th : pool) th.join();
    if (failures) {
        std::fprintf(stderr, "cpp_api: %d checks failed\n", failures);
        return 1;
    }
    std::printf("cpp_api: all checks passed\n");
    return 0;
}
