/*
 * measure: run a command, then write its wall time, peak RSS and CPU time (user, system)
 * to a file in the format of GNU time's `-f '%e %M %U %S' -o FILE` (benches/capi/run
 * uses it where /usr/bin/time is missing, or with MEASURE=wrapper).
 *
 *   measure OUTFILE COMMAND [ARGS...]
 *
 * OUTFILE gets "Command terminated by signal N" or "Command exited with non-zero status N"
 * when that is the case, then "SECONDS MAXRSS_KB USER_S SYSTEM_S". The exit status is the command's, or
 * 128 + N for a signal.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
	if (argc < 3) {
		fprintf(stderr, "usage: measure OUTFILE COMMAND [ARGS...]\n");
		return 2;
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pid_t pid = fork();
	if (pid < 0) {
		perror("measure: fork");
		return 2;
	}
	if (pid == 0) {
		execvp(argv[2], argv + 2);
		fprintf(stderr, "measure: cannot run %s: %s\n", argv[2], strerror(errno));
		_exit(127);
	}
	int status;
	struct rusage ru;
	while (wait4(pid, &status, 0, &ru) < 0) {
		if (errno != EINTR) {
			perror("measure: wait4");
			return 2;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	FILE *out = fopen(argv[1], "w");
	if (!out) {
		perror("measure: output file");
		return 2;
	}
	int rc = 0;
	if (WIFSIGNALED(status)) {
		fprintf(out, "Command terminated by signal %d\n", WTERMSIG(status));
		rc = 128 + WTERMSIG(status);
	} else if (WEXITSTATUS(status) != 0) {
		fprintf(out, "Command exited with non-zero status %d\n", WEXITSTATUS(status));
		rc = WEXITSTATUS(status);
	}
	fprintf(out, "%.3f %ld %.3f %.3f\n", wall, ru.ru_maxrss,
		(double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
		(double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
	fclose(out);
	return rc;
}
