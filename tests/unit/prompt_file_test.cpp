// Prompt files: what is refused, and that every refusal names the file, the line and (for JSONL) the field.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "ferry/error.h"
#include "ferry/prompt_file.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;

class PromptFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ferry-prompts-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path write(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }
  // The message read_prompt_file throws for `text` in a file called `name` ("" if it does not throw).
  std::string error_for(const std::string& name, const std::string& text) {
    try {
      read_prompt_file(write(name, text));
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }
  fs::path dir_;
};

TEST_F(PromptFileTest, InvalidUtf8InATextFileNamesFileLineAndByte) {
  const std::string msg = error_for("p.txt", "fine\nbad \xC3\x28 here\nalso fine\n");
  EXPECT_NE(msg.find("p.txt:2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("UTF-8"), std::string::npos) << msg;
  EXPECT_NE(msg.find("0xC3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("column 5"), std::string::npos) << msg;
  for (const std::string bad : {"\xFF", "\xC0\x80", "\xED\xA0\x80", "abc\xE2\x82"})
    EXPECT_NE(error_for("q.txt", "ok\n" + bad + "\n").find("q.txt:2"), std::string::npos);
}

TEST_F(PromptFileTest, ValidUtf8IsRead) {
  auto r = read_prompt_file(write("p.txt", "caf\xC3\xA9 \xE2\x9C\x93 \xF0\x9F\x98\x80\n"));
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].text, "caf\xC3\xA9 \xE2\x9C\x93 \xF0\x9F\x98\x80");
}

TEST_F(PromptFileTest, MaxTokensOutsideIntOrNotAnIntegerIsRefusedNamingTheField) {
  for (const std::string v : {"4294967297", "2147483648", "18446744073709551615", "-1", "0", "2.5", "1e3",
                              "\"5\"", "null", "true", "[1]"}) {
    const std::string msg = error_for("p.jsonl", "{\"prompt\": \"a\"}\n{\"prompt\": \"b\", \"max_tokens\": " + v + "}\n");
    EXPECT_NE(msg.find("p.jsonl:2"), std::string::npos) << v << ": " << msg;
    EXPECT_NE(msg.find("\"max_tokens\""), std::string::npos) << v << ": " << msg;
  }
}

TEST_F(PromptFileTest, MaxTokensInRangeIsKept) {
  auto r = read_prompt_file(write("p.jsonl", "{\"prompt\": \"a\", \"max_tokens\": 2147483647}\n"
                                             "{\"prompt\": \"b\", \"max_tokens\": 1}\n{\"prompt\": \"c\"}\n"));
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].max_tokens, 2147483647);
  EXPECT_EQ(r[1].max_tokens, 1);
  EXPECT_FALSE(r[2].max_tokens.has_value());
}

TEST_F(PromptFileTest, ANumberTooLargeForJsonNamesFileAndLine) {
  const std::string msg = error_for("p.jsonl", "{\"prompt\": \"a\", \"max_tokens\": 1e999}\n");
  EXPECT_NE(msg.find("p.jsonl:1"), std::string::npos) << msg;
}

TEST_F(PromptFileTest, InvalidUtf8InAJsonlLineNamesFileAndLine) {
  const std::string msg = error_for("p.jsonl", "{\"prompt\": \"a\"}\n{\"prompt\": \"b\xFF\"}\n");
  EXPECT_NE(msg.find("p.jsonl:2"), std::string::npos) << msg;
}

// Results are found by id (--resume): an id shared by two prompts would let one result stand for both.
TEST_F(PromptFileTest, RepeatedOrEmptyIdsAreRefusedNamingBothLines) {
  std::string msg = error_for("p.jsonl", "{\"prompt\":\"a\",\"id\":\"x\"}\n\n{\"prompt\":\"b\",\"id\":\"x\"}\n");
  EXPECT_NE(msg.find("p.jsonl:3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("line 1"), std::string::npos) << msg;
  // a line without "id" takes its line number, which an explicit id may not take too
  msg = error_for("p.jsonl", "{\"prompt\":\"a\",\"id\":\"2\"}\n{\"prompt\":\"b\"}\n");
  EXPECT_NE(msg.find("p.jsonl:2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("\"2\""), std::string::npos) << msg;
  for (const std::string id : {"\"\"", "\"  \""}) {
    msg = error_for("p.jsonl", "{\"prompt\":\"a\",\"id\":" + id + "}\n");
    EXPECT_NE(msg.find("p.jsonl:1"), std::string::npos) << id << ": " << msg;
    EXPECT_NE(msg.find("empty"), std::string::npos) << id << ": " << msg;
  }
  // distinct explicit ids, numeric ones and line numbers that do not collide are fine
  auto r = read_prompt_file(write("ok.jsonl", "{\"prompt\":\"a\",\"id\":7}\n{\"prompt\":\"b\"}\n{\"prompt\":\"c\",\"id\":\"x\"}\n"));
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].id, "7");
  EXPECT_EQ(r[1].id, "2");
  EXPECT_EQ(r[2].id, "x");
}

}  // namespace
}  // namespace ferry
