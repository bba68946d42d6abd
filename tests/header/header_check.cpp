/* header_check.c compiled as C++17: see there. */
#include "header_check.c"
