/*
 * Consumer processes for the hand-off examples: each is forked with a pipe
 * from the producer (it reads its message there) and ends with the exit
 * status its function returns. Included by handoff_consumers.c and
 * cuda_ipc_handoff.c.
 */
#ifndef MMPOOL_EXAMPLE_CONSUMER_PROCESSES_H
#define MMPOOL_EXAMPLE_CONSUMER_PROCESSES_H

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* What a consumer process runs: `in` is its end of the pipe. */
typedef int (*consumer_main)(int in, uint32_t part, void *arg);

/* Forks `n` consumers running `run`; writes their pids to `child` and the
 * write ends of their pipes to `out`. 0 on success. */
static int fork_consumers(uint32_t n, consumer_main run, void *arg, pid_t child[], int out[]) {
    for (uint32_t part = 0; part < n; part++) {
        int pipe_fd[2];
        if (pipe(pipe_fd) != 0) {
            perror("pipe");
            return 1;
        }
        fflush(stdout);
        child[part] = fork();
        if (child[part] < 0) {
            perror("fork");
            return 1;
        }
        if (child[part] == 0) {
            close(pipe_fd[1]);
            int rc = run(pipe_fd[0], part, arg);
            fflush(stdout);
            _exit(rc);
        }
        close(pipe_fd[0]);
        out[part] = pipe_fd[1];
    }
    return 0;
}

/* Sends every consumer the same `len` bytes. 0 on success. */
static int send_to_consumers(uint32_t n, const int out[], const void *message, size_t len) {
    for (uint32_t part = 0; part < n; part++) {
        if (write(out[part], message, len) != (ssize_t)len) {
            perror("write to a consumer");
            return 1;
        }
    }
    return 0;
}

/* Closes the pipes (a consumer still reading sees their end), then waits
 * for the `n` consumers; 1 when every one exited with status 0. */
static int consumers_succeeded(uint32_t n, const int out[], const pid_t child[]) {
    for (uint32_t part = 0; part < n; part++) close(out[part]);
    int ok = 1;
    for (uint32_t part = 0; part < n; part++) {
        int status = 0;
        ok &= waitpid(child[part], &status, 0) == child[part] && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }
    return ok;
}

#endif
