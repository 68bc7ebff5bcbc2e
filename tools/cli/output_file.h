// A file a command writes as it goes (the results of `ferry run`, its --metrics): opened (created if
// missing, for appending) before the model loads, so an unwritable path is reported before any work;
// every write and the close are checked, and a failure is a ferry::Error naming the file and the
// system's reason ("No space left on device").
#pragma once
#include <string>
#include <string_view>

namespace ferry::cli {

class OutputFile {
 public:
  // `what` names the contents in messages ("results", "metrics"). Throws ferry::Error when the file
  // cannot be opened for writing (missing or read-only directory, a directory, no permission).
  OutputFile(std::string path, std::string what);
  // Closes the file without checking; removes it when this object created it and nothing was ever
  // written to it (the command failed before producing anything), unless keep() was called.
  ~OutputFile();
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  // A last line without its trailing newline (a write cut short by a crash or a full disk) is cut back
  // to the end of the line before it, so the next append starts on a line of its own. Returns the
  // number of bytes removed. Only regular files are cut (not /dev/full or a pipe).
  size_t cut_torn_last_line();
  // Empties the file (regular files only).
  void truncate();
  // Appends all of `bytes`, or throws ferry::Error naming the file and errno's text. A failed append
  // may have written a part of `bytes` (cut_torn_last_line removes it on the next run).
  void append(std::string_view bytes);
  // Flushes to the storage device (regular files) and closes, checked.
  void close();
  // Do not remove the file in the destructor even if it is empty.
  void keep() { keep_ = true; }

  const std::string& path() const { return path_; }
  bool regular() const { return regular_; }

 private:
  [[noreturn]] void fail(const std::string& doing, int err) const;

  std::string path_, what_;
  int fd_ = -1;
  bool created_ = false, regular_ = false, keep_ = false, written_ = false;
};

}  // namespace ferry::cli
