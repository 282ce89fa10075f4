/* modules.c: tern as a clang module, through the installed include/module.modulemap
 * (what Swift's importer reads), with no #include of tern.h: `@import tern;` when
 * compiled as Objective-C (`-x objective-c`: the syntax is Objective-C's, nothing else
 * here is), the same import spelled as a pragma when compiled as C.
 *
 *   clang -fmodules -fmodules-cache-path=DIR -I<includedir> [-x objective-c] modules.c \
 *       -x none $(pkg-config --libs tern)
 */
#if defined(__OBJC__)
@import tern;
#else
#pragma clang module import tern
#endif

#include <stdio.h>
#include <string.h>

int main(void) {
    tern_code c = tern_version_check(TERN_VERSION_MAJOR, TERN_VERSION_MINOR);
    tern_runtime *rt = NULL;
    tern_error *err = NULL;
    if (c == TERN_CODE_OK) c = tern_runtime_new(NULL, &rt, &err);
    if (c != TERN_CODE_OK) {
        fprintf(stderr, "%s: %s\n", tern_code_name(c), err ? tern_error_message(err) : "");
        tern_error_free(err);
        return 1;
    }
    tern_runtime_free(rt);
    printf("modules: OK: tern %s imported as a module (%s)\n", tern_version(),
           strcmp(tern_code_name(TERN_CODE_SHUTDOWN), "SHUTDOWN") == 0 ? "enums" : "?");
    return 0;
}
