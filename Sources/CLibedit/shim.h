#ifndef CLIBEDIT_SHIM_H
#define CLIBEDIT_SHIM_H
// <stdio.h> first: editline's readline.h uses FILE without including it.
#include <stdio.h>
#include <editline/readline.h>

// Setters for readline's completion globals: Swift 6 refuses to touch a C global variable
// directly (shared mutable state); the shell's readline runs on one thread.
static inline void kvctl_set_completion(rl_completion_func_t *function) {
    rl_attempted_completion_function = function;
}
static inline void kvctl_completion_over(void) { rl_attempted_completion_over = 1; }
#endif
