// Reader kinds by name, as a user types them (a flag or a policy field) and as metrics report them.
#include <string>

#include "ferry/error.h"
#include "ferry/experts/chunk_reader.h"

namespace ferry::experts {

std::string_view reader_kind_name(ReaderKind k) {
  switch (k) {
    case ReaderKind::Auto:
      return "auto";
    case ReaderKind::Uring:
      return "io_uring";
    case ReaderKind::Pread:
      return "pread";
    case ReaderKind::Fake:
      return "fake";
  }
  FERRY_ASSERT_MSG(false, "unknown ReaderKind");
  return "";
}

ReaderKind parse_reader_kind(std::string_view s) {
  for (ReaderKind k : {ReaderKind::Auto, ReaderKind::Uring, ReaderKind::Pread, ReaderKind::Fake})
    if (s == reader_kind_name(k)) return k;
  throw Error("unknown chunk reader '" + std::string(s) +
              "': choose auto (io_uring, else pread), io_uring, pread or fake (tests only)");
}

}  // namespace ferry::experts
