/*
 * whichmalloc: prints the file of the object that malloc, free, calloc and realloc resolve
 * to in this process (benches/capi/run checks that an LD_PRELOAD library really replaces
 * glibc's malloc before it is measured: a library that fails to load is only warned
 * about by ld.so, and the program then runs with glibc).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
	static const char *names[] = {"malloc", "free", "calloc", "realloc"};
	const char *first = NULL;
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		void *sym = dlsym(RTLD_DEFAULT, names[i]);
		Dl_info info;
		if (!sym || !dladdr(sym, &info) || !info.dli_fname) {
			printf("?\n");
			return 1;
		}
		if (!first) {
			first = info.dli_fname;
		} else if (strcmp(first, info.dli_fname) != 0) {
			printf("mixed: malloc from %s, %s from %s\n", first, names[i], info.dli_fname);
			return 1;
		}
	}
	void *p = malloc(100);
	free(p);
	printf("%s\n", first);
	return 0;
}
