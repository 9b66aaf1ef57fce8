#ifndef CLIBEDIT_SHIM_H
#define CLIBEDIT_SHIM_H
// <stdio.h> first: editline's readline.h uses FILE without including it.
#include <stdio.h>
#include <editline/readline.h>
#endif
