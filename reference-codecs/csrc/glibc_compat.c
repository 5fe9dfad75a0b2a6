/*
 * Debian's libqpl.a (built against glibc 2.38) calls the C23 entry points
 * __isoc23_strtol and __isoc23_strtoll, which glibc 2.36 (Debian 12) lacks.
 * For the base-10 configuration strings QPL parses, the C23 variants behave
 * exactly like strtol/strtoll (they differ only in accepting a "0b" prefix
 * with base 0 or 2), so forwarding is enough.
 */
#include <stdlib.h>

long __isoc23_strtol(const char *nptr, char **endptr, int base);
long long __isoc23_strtoll(const char *nptr, char **endptr, int base);

long __isoc23_strtol(const char *nptr, char **endptr, int base)
{
    return strtol(nptr, endptr, base);
}

long long __isoc23_strtoll(const char *nptr, char **endptr, int base)
{
    return strtoll(nptr, endptr, base);
}
