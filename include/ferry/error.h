// Errors a user can act on (missing file, bad config, a policy that does not fit) are thrown as
// ferry::Error with a message naming the file / tensor / key and what to do. The command line catches
// them and exits non-zero; library code never calls exit(). Programmer errors use FERRY_ASSERT.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace ferry {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

[[noreturn]] inline void assert_fail(const char* expr, const char* file, int line, const char* msg) {
  std::fprintf(stderr, "ferry: internal error: %s:%d: assertion '%s' failed%s%s\n", file, line, expr,
               msg ? ": " : "", msg ? msg : "");
  std::abort();
}

}  // namespace ferry

#define FERRY_ASSERT(cond) \
  ((cond) ? (void)0 : ::ferry::assert_fail(#cond, __FILE__, __LINE__, nullptr))
#define FERRY_ASSERT_MSG(cond, msg) \
  ((cond) ? (void)0 : ::ferry::assert_fail(#cond, __FILE__, __LINE__, (msg)))
