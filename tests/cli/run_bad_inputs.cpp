// The bad-input matrix runner: reads tests/cli/bad_inputs.tsv, builds each case's files in a scratch
// directory, runs the command (a `ferry` invocation) through /bin/sh, and checks the exit status, phrases
// in stderr and conditions on the files left behind. One line per case, then `N passed, N failed`.
//
//   ferry_bad_inputs --ferry build/ferry --root . [--table tests/cli/bad_inputs.tsv] [--work DIR]
//                    [--filter SUBSTR] [--timeout SECONDS] [--keep] [-v]
//
// Table: tab-separated, one case per line, `#` comments and blank lines ignored, first non-comment line
// the column header. Columns:
//   name     unique case name
//   status   ok: must pass; pending: expected to fail for now (a known bug being fixed) -- reported as
//            XFAIL, or as XPASS when it passes already (then mark it ok); neither fails the suite
//   exit     the expected exit status (a number), or `nonzero` (any failure exit, never a signal)
//   stderr   phrases that must all appear in stderr (case-insensitive), separated by ` && `; - for none
//   setup    operations that build the case's files, separated by ` ; `; - for none (see apply_setup)
//   command  a /bin/sh command run in the case's directory, with $FERRY (the binary), $W (the case's
//            directory), $DATA (tests/data) and $ROOT (the source tree) in its environment
//   check    conditions on the files afterwards, separated by ` ; `; - for none (see apply_check)
// Whatever the case expects, a sanitizer report in stderr, death by a signal or a timeout fails it.
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

namespace {

struct Options {
  fs::path ferry, root, table, work;
  std::string filter;
  int timeout_s = 180;
  bool keep = false, verbose = false;
};

struct Case {
  int line = 0;
  std::string name, status, exit, stderr_phrases, setup, command, check;
};

// A failed setup, check or expectation: the message is the case's one-line reason.
struct CaseFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

std::vector<std::string> split(const std::string& s, const std::string& sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t at = s.find(sep, start);
    out.push_back(trim(s.substr(start, at == std::string::npos ? std::string::npos : at - start)));
    if (at == std::string::npos) break;
    start = at + sep.size();
  }
  return out;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw CaseFailure("cannot read " + p.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const fs::path& p, const std::string& bytes) {
  if (p.has_parent_path()) fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw CaseFailure("cannot write " + p.string());
}

// \n \t \r \\ \xHH in table text (so a case can hold a newline, a tab or invalid UTF-8).
std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out += s[i];
      continue;
    }
    char c = s[++i];
    if (c == 'n') out += '\n';
    else if (c == 't') out += '\t';
    else if (c == 'r') out += '\r';
    else if (c == '\\') out += '\\';
    else if (c == 'x' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
             std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += '\\';
      out += c;
    }
  }
  return out;
}

// ---- the case's context -------------------------------------------------------------------------

struct Context {
  const Options* opt;
  fs::path dir;  // $W
  std::string expand(const std::string& s) const {
    std::string out = s;
    const std::pair<std::string, std::string> vars[] = {
        {"$DATA", (opt->root / "tests" / "data").string()},
        {"$ROOT", opt->root.string()},
        {"$W", dir.string()},
    };
    for (const auto& [k, v] : vars)
      for (size_t at = out.find(k); at != std::string::npos; at = out.find(k, at + v.size()))
        out.replace(at, k.size(), v);
    return out;
  }
  fs::path path(const std::string& arg) const {
    fs::path p = expand(arg);
    return p.is_absolute() ? p : dir / p;
  }
};

// ---- safetensors surgery ------------------------------------------------------------------------
// The file is [u64 header length][header JSON][data]; edits rewrite the header (padded with spaces to
// a multiple of 8, as the reference writer does) and keep the data bytes as they are.

struct Safetensors {
  Json header;
  std::string data;
};

Safetensors read_safetensors(const fs::path& p) {
  std::string bytes = read_file(p);
  if (bytes.size() < 8) throw CaseFailure(p.string() + ": too short for a safetensors file");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
  if (n > bytes.size() - 8) throw CaseFailure(p.string() + ": header length past the end");
  Safetensors st;
  st.header = Json::parse(bytes.substr(8, n));
  st.data = bytes.substr(8 + n);
  return st;
}

void write_safetensors(const fs::path& p, const Safetensors& st) {
  std::string h = st.header.dump();
  while (h.size() % 8) h += ' ';
  std::string out(8, '\0');
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  write_file(p, out + h + st.data);
}

Json& tensor_entry(Safetensors& st, const std::string& name, const fs::path& p) {
  if (!st.header.contains(name)) throw CaseFailure(p.string() + " has no tensor " + name);
  return st.header[name];
}

uint16_t f32_to_bits16(float v, bool bf16) {
  if (bf16) {
    uint32_t u;
    std::memcpy(&u, &v, 4);
    return static_cast<uint16_t>(u >> 16);
  }
  // f16: enough for the special values and small numbers the table uses
  if (std::isnan(v)) return 0x7e00;
  if (std::isinf(v)) return v > 0 ? 0x7c00 : 0xfc00;
  if (v == 0) return 0;
  uint32_t u;
  std::memcpy(&u, &v, 4);
  uint32_t sign = (u >> 16) & 0x8000;
  int exp = static_cast<int>((u >> 23) & 0xff) - 127 + 15;
  if (exp >= 31) return static_cast<uint16_t>(sign | 0x7c00);
  if (exp <= 0) return static_cast<uint16_t>(sign);
  return static_cast<uint16_t>(sign | (static_cast<uint32_t>(exp) << 10) | ((u >> 13) & 0x3ff));
}

float parse_value(const std::string& s) {
  std::string l = lower(s);
  if (l == "nan") return std::numeric_limits<float>::quiet_NaN();
  if (l == "inf") return std::numeric_limits<float>::infinity();
  if (l == "-inf") return -std::numeric_limits<float>::infinity();
  return std::stof(s);
}

// Sets every element of a tensor (F32, BF16 or F16) to `value`; with a count, only the first `count`.
void fill_tensor(Safetensors& st, const std::string& name, const fs::path& p, float value, size_t count) {
  Json& e = tensor_entry(st, name, p);
  std::string dtype = e["dtype"].get<std::string>();
  size_t begin = e["data_offsets"][0].get<size_t>(), end = e["data_offsets"][1].get<size_t>();
  if (end > st.data.size() || begin > end) throw CaseFailure(name + ": offsets outside the data");
  size_t width = dtype == "F32" ? 4 : (dtype == "BF16" || dtype == "F16") ? 2 : 0;
  if (!width) throw CaseFailure(name + ": cannot fill dtype " + dtype);
  size_t n = std::min((end - begin) / width, count);
  for (size_t i = 0; i < n; ++i) {
    char* at = st.data.data() + begin + i * width;
    if (width == 4) {
      std::memcpy(at, &value, 4);
    } else {
      uint16_t b = f32_to_bits16(value, dtype == "BF16");
      std::memcpy(at, &b, 2);
    }
  }
}

// ---- setup --------------------------------------------------------------------------------------
// Operations (paths relative to the case's directory; $W, $DATA, $ROOT expanded):
//   model NAME [DIR]              copy tests/data/oracles/NAME to DIR (default m), without the
//                                 reference.* oracle dumps
//   copy SRC DST                  copy a file
//   write FILE TEXT               write TEXT (the rest of the operation, \n \t \r \\ \xHH escapes)
//   append FILE TEXT              append TEXT likewise
//   repeat FILE N TEXT            write TEXT N times
//   rm PATH | mkdir DIR
//   truncate FILE N               keep the first N bytes (N < 0: drop the last -N bytes)
//   json_set FILE KEY VALUE       set a key of a JSON file to a JSON VALUE (the rest); KEY is dotted
//                                 (a.b), or /a/b.c when a key holds dots
//   json_del FILE KEY             remove a dotted key
//   st_set FILE TENSOR FIELD VALUE  set a safetensors header field (dtype, shape, data_offsets) to VALUE
//   st_del FILE TENSOR            remove a tensor's header entry (its bytes stay: a gap)
//   st_rename FILE OLD NEW        rename a tensor
//   st_add FILE TENSOR DTYPE SHAPE  append a zero-filled tensor (F32, BF16, F16, I8, U8...; SHAPE in JSON)
//   st_fill FILE TENSOR VALUE [N] set the tensor's elements (the first N) to VALUE (nan, inf, -inf, 1.5)
//   header_len FILE N             overwrite the 8-byte header length with N

std::vector<std::string> words(const std::string& s, size_t max_words) {
  // The first max_words-1 whitespace-separated words, then the rest of the text as the last.
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size() && out.size() + 1 < max_words) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    size_t j = i;
    while (j < s.size() && !std::isspace(static_cast<unsigned char>(s[j]))) ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  if (i < s.size()) out.push_back(s.substr(i));
  return out;
}

// KEY is dotted (a.b.c), or, for keys that hold dots, a path starting with / (/weight_map/model.norm.weight).
Json* json_at(Json& root, const std::string& dotted, bool create, std::string* last) {
  std::vector<std::string> parts =
      dotted.rfind('/', 0) == 0 ? split(dotted.substr(1), "/") : split(dotted, ".");
  Json* node = &root;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    if (!node->is_object()) throw CaseFailure("json key " + dotted + ": " + parts[i] + " is not an object");
    if (!node->contains(parts[i])) {
      if (!create) return nullptr;
      (*node)[parts[i]] = Json::object();
    }
    node = &(*node)[parts[i]];
  }
  *last = parts.back();
  return node;
}

void apply_setup_op(const Context& cx, const std::string& op_text) {
  std::vector<std::string> w = words(op_text, 2);
  if (w.empty()) return;
  const std::string& op = w[0];
  const std::string rest = w.size() > 1 ? w[1] : "";
  auto args = [&](size_t n) {
    std::vector<std::string> a = words(rest, n);
    if (a.size() < n) throw CaseFailure("setup '" + op_text + "': " + op + " takes " + std::to_string(n) + " arguments");
    return a;
  };
  if (op == "model") {
    std::vector<std::string> a = words(rest, 2);
    if (a.empty()) throw CaseFailure("setup '" + op_text + "': model NAME [DIR]");
    fs::path src = cx.opt->root / "tests" / "data" / "oracles" / a[0];
    fs::path dst = cx.path(a.size() > 1 ? a[1] : "m");
    if (!fs::is_directory(src)) throw CaseFailure("no fixture " + src.string());
    fs::create_directories(dst);
    for (const auto& entry : fs::directory_iterator(src)) {
      std::string name = entry.path().filename().string();
      if (name.rfind("reference.", 0) == 0) continue;
      fs::copy_file(entry.path(), dst / name, fs::copy_options::overwrite_existing);
    }
  } else if (op == "copy") {
    auto a = args(2);
    fs::path dst = cx.path(a[1]);
    if (dst.has_parent_path()) fs::create_directories(dst.parent_path());
    fs::copy(cx.path(a[0]), dst, fs::copy_options::overwrite_existing | fs::copy_options::recursive);
  } else if (op == "write" || op == "append") {
    std::vector<std::string> a = words(rest, 2);
    if (a.empty()) throw CaseFailure("setup '" + op_text + "': " + op + " FILE TEXT");
    std::string text = a.size() > 1 ? unescape(cx.expand(a[1])) : "";
    fs::path p = cx.path(a[0]);
    write_file(p, (op == "append" && fs::exists(p) ? read_file(p) : "") + text);
  } else if (op == "repeat") {
    auto a = args(3);
    std::string text = unescape(cx.expand(a[2])), all;
    for (int i = 0, n = std::stoi(a[1]); i < n; ++i) all += text;
    write_file(cx.path(a[0]), all);
  } else if (op == "rm") {
    fs::remove_all(cx.path(args(1)[0]));
  } else if (op == "mkdir") {
    fs::create_directories(cx.path(args(1)[0]));
  } else if (op == "truncate") {
    auto a = args(2);
    fs::path p = cx.path(a[0]);
    long long n = std::stoll(a[1]);
    auto size = static_cast<long long>(fs::file_size(p));
    fs::resize_file(p, static_cast<uintmax_t>(n >= 0 ? std::min(n, size) : std::max(0LL, size + n)));
  } else if (op == "json_set" || op == "json_del") {
    auto a = args(op == "json_set" ? 3 : 2);
    fs::path p = cx.path(a[0]);
    Json j = Json::parse(read_file(p));
    std::string key;
    Json* parent = json_at(j, a[1], op == "json_set", &key);
    if (op == "json_set") {
      (*parent)[key] = Json::parse(a[2]);
    } else if (parent) {
      parent->erase(key);
    }
    write_file(p, j.dump(2) + "\n");
  } else if (op == "st_set") {
    auto a = args(4);
    fs::path p = cx.path(a[0]);
    Safetensors st = read_safetensors(p);
    tensor_entry(st, a[1], p)[a[2]] = Json::parse(a[3]);
    write_safetensors(p, st);
  } else if (op == "st_del") {
    auto a = args(2);
    fs::path p = cx.path(a[0]);
    Safetensors st = read_safetensors(p);
    tensor_entry(st, a[1], p);
    st.header.erase(a[1]);
    write_safetensors(p, st);
  } else if (op == "st_rename") {
    auto a = args(3);
    fs::path p = cx.path(a[0]);
    Safetensors st = read_safetensors(p);
    Json e = tensor_entry(st, a[1], p);
    st.header.erase(a[1]);
    st.header[a[2]] = e;
    write_safetensors(p, st);
  } else if (op == "st_add") {
    auto a = args(4);
    fs::path p = cx.path(a[0]);
    Safetensors st = read_safetensors(p);
    Json shape = Json::parse(a[3]);
    size_t n = 1;
    for (const auto& d : shape) n *= d.get<size_t>();
    const std::string& dtype = a[2];
    size_t width = (dtype == "F64" || dtype == "I64" || dtype == "U64") ? 8
                   : (dtype == "F32" || dtype == "I32" || dtype == "U32") ? 4
                   : (dtype == "BF16" || dtype == "F16" || dtype == "I16" || dtype == "U16") ? 2 : 1;
    size_t begin = st.data.size();
    st.data.append(n * width, '\0');
    st.header[a[1]] = Json{{"dtype", dtype}, {"shape", shape}, {"data_offsets", {begin, st.data.size()}}};
    write_safetensors(p, st);
  } else if (op == "st_fill") {
    std::vector<std::string> a = words(rest, 4);
    if (a.size() < 3) throw CaseFailure("setup '" + op_text + "': st_fill FILE TENSOR VALUE [N]");
    fs::path p = cx.path(a[0]);
    Safetensors st = read_safetensors(p);
    size_t count = a.size() > 3 ? std::stoul(a[3]) : std::numeric_limits<size_t>::max();
    fill_tensor(st, a[1], p, parse_value(a[2]), count);
    write_safetensors(p, st);
  } else if (op == "header_len") {
    auto a = args(2);
    fs::path p = cx.path(a[0]);
    std::string bytes = read_file(p);
    if (bytes.size() < 8) bytes.resize(8);
    uint64_t n = std::stoull(a[1]);
    for (int i = 0; i < 8; ++i) bytes[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
    write_file(p, bytes);
  } else {
    throw CaseFailure("setup: unknown operation '" + op + "'");
  }
}

// ---- checks -------------------------------------------------------------------------------------
//   exists FILE | absent FILE
//   jsonl FILE            every line is a JSON object and the file ends with a newline
//   ids FILE LIST         the "id" fields are exactly LIST, each once: 1..32 or a,b,c
//   lines FILE N          the file has N lines
//   field_absent FILE KEY no line of the JSONL file has the field KEY (e.g. error: no request failed)
//   stdout PHRASE         stdout contains PHRASE (case-insensitive)
//   no_stderr PHRASE      stderr does not contain PHRASE (case-insensitive)

std::vector<std::string> id_list(const std::string& spec) {
  std::vector<std::string> out;
  size_t dots = spec.find("..");
  if (dots != std::string::npos) {
    int a = std::stoi(spec.substr(0, dots)), b = std::stoi(spec.substr(dots + 2));
    for (int i = a; i <= b; ++i) out.push_back(std::to_string(i));
  } else {
    out = split(spec, ",");
  }
  return out;
}

void apply_check(const Context& cx, const std::string& check, const std::string& out, const std::string& err) {
  std::vector<std::string> w = words(check, 2);
  if (w.empty()) return;
  const std::string& op = w[0];
  const std::string rest = w.size() > 1 ? w[1] : "";
  std::vector<std::string> a = words(rest, 2);
  auto need = [&](size_t n) {
    if (a.size() < n) throw CaseFailure("check '" + check + "': " + op + " takes " + std::to_string(n) + " arguments");
  };
  if (op == "exists" || op == "absent") {
    need(1);
    bool there = fs::exists(cx.path(a[0]));
    if (there != (op == "exists")) throw CaseFailure(a[0] + (there ? " exists" : " does not exist"));
  } else if (op == "jsonl" || op == "ids" || op == "lines" || op == "field_absent") {
    need(op == "jsonl" ? 1 : 2);
    fs::path p = cx.path(a[0]);
    if (!fs::exists(p)) throw CaseFailure(a[0] + " does not exist");
    std::string text = read_file(p);
    if (!text.empty() && text.back() != '\n') throw CaseFailure(a[0] + ": the last line has no newline");
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    if (op == "lines") {
      if (lines.size() != std::stoul(a[1]))
        throw CaseFailure(a[0] + ": " + std::to_string(lines.size()) + " lines, expected " + a[1]);
      return;
    }
    std::map<std::string, int> seen;
    for (size_t i = 0; i < lines.size(); ++i) {
      Json j;
      try {
        j = Json::parse(lines[i]);
      } catch (const Json::exception&) {
        throw CaseFailure(a[0] + ":" + std::to_string(i + 1) + " is not JSON: " + lines[i].substr(0, 60));
      }
      if (!j.is_object()) throw CaseFailure(a[0] + ":" + std::to_string(i + 1) + " is not an object");
      if (op == "field_absent" && j.contains(a[1]))
        throw CaseFailure(a[0] + ":" + std::to_string(i + 1) + " has \"" + a[1] + "\": " + j[a[1]].dump().substr(0, 120));
      if (j.contains("id")) ++seen[j["id"].is_string() ? j["id"].get<std::string>() : j["id"].dump()];
    }
    if (op == "ids") {
      std::vector<std::string> want = id_list(a[1]);
      std::set<std::string> want_set(want.begin(), want.end());
      for (const auto& id : want)
        if (seen[id] != 1) throw CaseFailure(a[0] + ": id " + id + " appears " + std::to_string(seen[id]) + " times");
      for (const auto& [id, n] : seen)
        if (n && !want_set.count(id)) throw CaseFailure(a[0] + ": unexpected id " + id);
    }
  } else if (op == "stdout") {
    if (lower(out).find(lower(rest)) == std::string::npos) throw CaseFailure("stdout lacks '" + rest + "'");
  } else if (op == "no_stderr") {
    if (lower(err).find(lower(rest)) != std::string::npos) throw CaseFailure("stderr has '" + rest + "'");
  } else {
    throw CaseFailure("check: unknown condition '" + op + "'");
  }
}

// ---- running a case -----------------------------------------------------------------------------

struct Outcome {
  bool timed_out = false;
  int exit_code = -1;  // when exited
  int signal = 0;      // when killed by a signal
  double seconds = 0;
};

Outcome run_command(const Context& cx, const std::string& command, const fs::path& out, const fs::path& err) {
  auto t0 = std::chrono::steady_clock::now();
  pid_t pid = fork();
  if (pid < 0) throw CaseFailure(std::string("fork failed: ") + std::strerror(errno));
  if (pid == 0) {
    setpgid(0, 0);  // its own process group, so a timeout ends the shell and ferry together
    if (chdir(cx.dir.c_str()) != 0) _exit(127);
    setenv("FERRY", cx.opt->ferry.c_str(), 1);
    setenv("W", cx.dir.c_str(), 1);
    setenv("DATA", (cx.opt->root / "tests" / "data").c_str(), 1);
    setenv("ROOT", cx.opt->root.c_str(), 1);
    if (!freopen("/dev/null", "rb", stdin) || !freopen(out.c_str(), "wb", stdout) ||
        !freopen(err.c_str(), "wb", stderr))
      _exit(127);
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  setpgid(pid, pid);
  Outcome o;
  int status = 0;
  while (true) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s > cx.opt->timeout_s) {
      kill(-pid, SIGKILL);
      waitpid(pid, &status, 0);
      o.timed_out = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(s < 1 ? 5 : 50));
  }
  o.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (WIFEXITED(status)) o.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) o.signal = WTERMSIG(status);
  return o;
}

std::string last_line(const std::string& s) {
  std::string t = trim(s);
  size_t nl = t.rfind('\n');
  std::string l = nl == std::string::npos ? t : t.substr(nl + 1);
  return l.size() > 200 ? l.substr(0, 200) + "..." : l;
}

// Returns "" when the case meets its expectations, else the reason.
std::string run_case(const Options& opt, const Case& c, double* seconds) {
  Context cx{&opt, opt.work / c.name};
  fs::remove_all(cx.dir);
  fs::create_directories(cx.dir);
  try {
    if (c.setup != "-")
      for (const std::string& op : split(c.setup, " ; ")) apply_setup_op(cx, op);
  } catch (const CaseFailure& e) {
    return std::string("setup: ") + e.what();
  } catch (const std::exception& e) {
    return std::string("setup: ") + e.what();
  }
  const fs::path out = cx.dir / ".stdout", err = cx.dir / ".stderr";
  Outcome o = run_command(cx, c.command, out, err);
  *seconds = o.seconds;
  std::string out_text = fs::exists(out) ? read_file(out) : "", err_text = fs::exists(err) ? read_file(err) : "";
  std::string err_lower = lower(err_text);
  if (o.timed_out) return "timed out after " + std::to_string(opt.timeout_s) + " s";
  for (const char* report : {"addresssanitizer", "leaksanitizer", "undefinedbehaviorsanitizer", "runtime error:"})
    if (err_lower.find(report) != std::string::npos) {
      size_t at = err_lower.find(report);
      size_t nl = err_text.find('\n', at);
      return "sanitizer report: " + err_text.substr(at, std::min<size_t>(nl - at, 200));
    }
  if (o.signal) return "killed by signal " + std::to_string(o.signal) + "; stderr: " + last_line(err_text);
  // sh reports 128+N when its child dies by signal N; a ferry exit status is never above 125.
  if (o.exit_code > 125 && o.exit_code != 126 && o.exit_code != 127)
    return "killed by signal " + std::to_string(o.exit_code - 128) + "; stderr: " + last_line(err_text);
  if (o.exit_code == 126 || o.exit_code == 127) return "the command did not run (exit " + std::to_string(o.exit_code) + ")";
  if (c.exit == "nonzero") {
    if (o.exit_code == 0) return "exit 0, expected a failure; stderr: " + last_line(err_text);
  } else if (o.exit_code != std::stoi(c.exit)) {
    return "exit " + std::to_string(o.exit_code) + ", expected " + c.exit + "; stderr: " + last_line(err_text);
  }
  if (c.stderr_phrases != "-")
    for (const std::string& phrase : split(c.stderr_phrases, " && "))
      if (err_lower.find(lower(unescape(phrase))) == std::string::npos)
        return "stderr lacks '" + phrase + "': " + last_line(err_text);
  try {
    if (c.check != "-")
      for (const std::string& chk : split(c.check, " ; ")) apply_check(cx, chk, out_text, err_text);
  } catch (const std::exception& e) {
    return std::string("check: ") + e.what();
  }
  return "";
}

std::vector<Case> read_table(const fs::path& table) {
  std::ifstream in(table);
  if (!in) throw std::runtime_error("cannot read " + table.string());
  std::vector<Case> cases;
  std::set<std::string> names;
  bool header_seen = false;
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (trim(line).empty() || trim(line)[0] == '#') continue;
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string cell; std::getline(ss, cell, '\t');) f.push_back(trim(cell));
    if (!header_seen) {
      header_seen = true;
      if (f.size() < 7 || f[0] != "name") throw std::runtime_error(table.string() + ":" + std::to_string(n) + ": expected the header line (name status exit stderr setup command check)");
      continue;
    }
    if (f.size() != 7)
      throw std::runtime_error(table.string() + ":" + std::to_string(n) + ": " + std::to_string(f.size()) +
                               " tab-separated cells, expected 7");
    Case c{n, f[0], f[1], f[2], f[3], f[4], f[5], f[6]};
    if (c.status != "ok" && c.status != "pending")
      throw std::runtime_error(table.string() + ":" + std::to_string(n) + ": status must be ok or pending");
    if (c.exit != "nonzero" && c.exit.find_first_not_of("0123456789") != std::string::npos)
      throw std::runtime_error(table.string() + ":" + std::to_string(n) + ": exit must be a number or nonzero");
    if (!names.insert(c.name).second)
      throw std::runtime_error(table.string() + ":" + std::to_string(n) + ": duplicate case name " + c.name);
    if (c.name.find_first_of("/ \\") != std::string::npos)
      throw std::runtime_error(table.string() + ":" + std::to_string(n) + ": case names may not hold / or spaces");
    cases.push_back(c);
  }
  return cases;
}

int usage() {
  std::cerr << "usage: ferry_bad_inputs --ferry PATH --root SOURCE_DIR [--table FILE] [--work DIR] "
               "[--filter SUBSTR] [--timeout SECONDS] [--keep] [-v]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
      return argv[++i];
    };
    try {
      if (a == "--ferry") opt.ferry = fs::absolute(value());
      else if (a == "--root") opt.root = fs::absolute(value());
      else if (a == "--table") opt.table = fs::absolute(value());
      else if (a == "--work") opt.work = fs::absolute(value());
      else if (a == "--filter") opt.filter = value();
      else if (a == "--timeout") opt.timeout_s = std::stoi(value());
      else if (a == "--keep") opt.keep = true;
      else if (a == "-v") opt.verbose = true;
      else return usage();
    } catch (const std::exception& e) {
      std::cerr << e.what() << "\n";
      return usage();
    }
  }
  if (opt.ferry.empty() || opt.root.empty()) return usage();
  if (opt.table.empty()) opt.table = opt.root / "tests" / "cli" / "bad_inputs.tsv";
  bool own_work = opt.work.empty();
  if (own_work) {
    std::string tmpl = (fs::temp_directory_path() / "ferry-bad-inputs-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) {
      std::perror("mkdtemp");
      return 2;
    }
    opt.work = tmpl;
  }
  std::vector<Case> cases;
  try {
    cases = read_table(opt.table);
  } catch (const std::exception& e) {
    std::cerr << "ferry_bad_inputs: " << e.what() << "\n";
    return 2;
  }
  int passed = 0, failed = 0, xfail = 0, xpass = 0;
  std::vector<std::string> failures;
  for (const Case& c : cases) {
    if (!opt.filter.empty() && c.name.find(opt.filter) == std::string::npos) continue;
    double seconds = 0;
    std::string why;
    try {
      why = run_case(opt, c, &seconds);
    } catch (const std::exception& e) {
      why = std::string("runner: ") + e.what();
    }
    char t[32];
    std::snprintf(t, sizeof t, "%6.2fs", seconds);
    if (c.status == "pending") {
      if (why.empty()) {
        ++xpass;
        std::cout << "XPASS " << t << "  " << c.name << "  (pending, but passes now: mark it ok)\n";
      } else {
        ++xfail;
        std::cout << "XFAIL " << t << "  " << c.name << "  (pending: " << why << ")\n";
      }
    } else if (why.empty()) {
      ++passed;
      std::cout << "PASS  " << t << "  " << c.name << "\n";
    } else {
      ++failed;
      std::cout << "FAIL  " << t << "  " << c.name << "  (" << opt.table.filename().string() << ":" << c.line
                << "): " << why << "\n";
      failures.push_back(c.name);
    }
    if (opt.verbose && !why.empty()) {
      std::cout << "      command: " << c.command << "\n";
      fs::path err = opt.work / c.name / ".stderr";
      if (fs::exists(err)) std::cout << "      stderr: " << trim(read_file(err)).substr(0, 2000) << "\n";
    }
    std::cout.flush();
    if (!opt.keep && why.empty()) fs::remove_all(opt.work / c.name);
  }
  std::cout << passed << " passed, " << failed << " failed";
  if (xfail || xpass)
    std::cout << " (and " << xfail + xpass << " pending: " << xfail << " still failing as expected, " << xpass
              << " passing now)";
  std::cout << "\n";
  if (!failures.empty()) {
    std::cout << "failed:";
    for (const auto& f : failures) std::cout << " " << f;
    std::cout << "\nscratch directories of the failed cases are kept under " << opt.work.string() << "\n";
  }
  if (own_work && !opt.keep && failures.empty()) fs::remove_all(opt.work);
  return failed ? 1 : 0;
}
