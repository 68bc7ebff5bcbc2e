#include "tokenizer/bpe_model.h"

#include <algorithm>
#include <cstdio>
#include <queue>

#include "tokenizer/json_fields.h"
#include "tokenizer/utf8.h"

namespace ferry {
namespace {

using namespace json_fields;

// Ids must be non-negative and dense enough that an id -> token table is reasonable.
constexpr int64_t kMaxTokenId = (int64_t{1} << 24) - 1;
constexpr size_t kCacheCapacity = 100'000;
constexpr size_t kMaxCachedWordBytes = 256;

struct Symbol {
  TokenId id;
  int32_t prev, next;  // neighbours in the word, -1 at the ends
  uint32_t bytes;      // 0: merged into its left neighbour
};

struct QueuedMerge {
  uint32_t rank;
  int32_t pos;
  TokenId merged;
  // std::priority_queue pops the largest: lowest rank first, then leftmost position.
  bool operator<(const QueuedMerge& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

}  // namespace

BpeModel::BpeModel(const json& model, const std::string& where) {
  require_object(model, where);
  const std::string type = get_string_or(model, "type", "BPE", where);
  if (type != "BPE") {
    fail(where + ".type",
         "model type \"" + type + "\" is not supported (ferry reads BPE tokenizer.json files)");
  }
  const double dropout = get_number_or(model, "dropout", 0.0, where);
  if (dropout < 0.0 || dropout > 1.0) fail(where + ".dropout", "must be between 0 and 1");
  continuing_subword_prefix_ = get_string_or(model, "continuing_subword_prefix", "", where);
  end_of_word_suffix_ = get_string_or(model, "end_of_word_suffix", "", where);
  fuse_unk_ = get_bool_or(model, "fuse_unk", false, where);
  byte_fallback_ = get_bool_or(model, "byte_fallback", false, where);
  ignore_merges_ = get_bool_or(model, "ignore_merges", false, where);

  const json& vocab = require(model, "vocab", where);
  if (!vocab.is_object())
    fail(where + ".vocab", "expected an object of token -> id, found " + type_name(vocab));
  vocab_.reserve(vocab.size());
  int64_t max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer()) {
      fail(where + ".vocab", "the id of token \"" + it.key() + "\" is not an integer");
    }
    const int64_t id = it.value().get<int64_t>();
    if (id < 0 || id > kMaxTokenId) {
      fail(where + ".vocab", "the id of token \"" + it.key() + "\" is out of range: " + std::to_string(id));
    }
    vocab_[it.key()] = static_cast<TokenId>(id);
    max_id = std::max(max_id, id);
  }
  if (max_id + 1 > static_cast<int64_t>(2 * vocab_.size() + 65536)) {
    fail(where + ".vocab", "ids are too sparse: largest id " + std::to_string(max_id) + " for " +
                               std::to_string(vocab_.size()) + " tokens");
  }
  id_to_token_.resize(static_cast<size_t>(max_id + 1));
  has_id_.assign(static_cast<size_t>(max_id + 1), false);
  for (const auto& [token, id] : vocab_) {
    id_to_token_[id] = token;
    has_id_[id] = true;
  }

  const std::string unk = get_string_or(model, "unk_token", "", where);
  if (find(model, "unk_token")) {
    auto it = vocab_.find(unk);
    if (it == vocab_.end()) fail(where + ".unk_token", "\"" + unk + "\" is not in the vocabulary");
    unk_id_ = it->second;
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    auto it = vocab_.find(name);
    byte_token_[b] = it == vocab_.end() ? -1 : it->second;
  }

  // Merges: "a b" strings (older files) or ["a", "b"] pairs (needed when tokens contain spaces).
  const json* merges = find(model, "merges");
  if (merges && !merges->is_array())
    fail(where + ".merges", "expected an array, found " + type_name(*merges));
  const size_t n_merges = merges ? merges->size() : 0;
  merges_.reserve(n_merges);
  for (size_t rank = 0; rank < n_merges; ++rank) {
    const json& m = (*merges)[rank];
    const std::string at = where + ".merges[" + std::to_string(rank) + "]";
    std::string left, right;
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        fail(at, "expected two tokens separated by one space, found \"" + s + "\"");
      }
      left = s.substr(0, space);
      right = s.substr(space + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      left = m[0].get<std::string>();
      right = m[1].get<std::string>();
    } else {
      fail(at, "expected \"a b\" or [\"a\", \"b\"], found " + m.dump().substr(0, 80));
    }
    auto left_it = vocab_.find(left), right_it = vocab_.find(right);
    if (left_it == vocab_.end()) fail(at, "token \"" + left + "\" is not in the vocabulary");
    if (right_it == vocab_.end()) fail(at, "token \"" + right + "\" is not in the vocabulary");
    std::string merged = left;
    if (!continuing_subword_prefix_.empty() && right.starts_with(continuing_subword_prefix_)) {
      merged.append(right, continuing_subword_prefix_.size(), std::string::npos);
    } else {
      merged.append(right);
    }
    auto merged_it = vocab_.find(merged);
    if (merged_it == vocab_.end()) fail(at, "the merged token \"" + merged + "\" is not in the vocabulary");
    merges_[pair_key(left_it->second, right_it->second)] = {static_cast<uint32_t>(rank), merged_it->second};
  }
}

std::optional<TokenId> BpeModel::token_to_id(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::id_to_token(TokenId id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size() || !has_id_[id]) return nullptr;
  return &id_to_token_[id];
}

void BpeModel::tokenize(std::string_view word, std::vector<TokenId>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (auto id = token_to_id(word)) {
      out.push_back(*id);
      return;
    }
  }
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = out.size();
  merge_word(word, out);
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    if (cache_.size() >= kCacheCapacity) cache_.clear();
    cache_.emplace(std::string(word), std::vector<TokenId>(out.begin() + first, out.end()));
  }
}

void BpeModel::merge_word(std::string_view word, std::vector<TokenId>& out) const {
  // 1. One symbol per character (or per byte via <0xNN> tokens, or the unknown token).
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto add = [&](TokenId id, size_t n_bytes) {
    const int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, index - 1, -1, static_cast<uint32_t>(n_bytes)});
    if (index > 0) symbols[index - 1].next = index;
  };
  size_t pending_unk_bytes = 0;  // > 0: an unknown token covering these bytes is waiting to be added
  std::string lookup;
  size_t pos = 0;
  while (pos < word.size()) {
    size_t n = utf8::char_length(word.substr(pos));
    if (n == 0) n = 1;  // not reached for valid UTF-8 input; keeps a stray byte as its own symbol
    const std::string_view ch = word.substr(pos, n);
    const bool is_first = pos == 0, is_last = pos + n == word.size();
    lookup.clear();
    if (!is_first) lookup.append(continuing_subword_prefix_);
    lookup.append(ch);
    if (is_last) lookup.append(end_of_word_suffix_);
    pos += n;

    if (auto it = vocab_.find(lookup); it != vocab_.end()) {
      if (pending_unk_bytes > 0) {
        add(*unk_id_, pending_unk_bytes);
        pending_unk_bytes = 0;
      }
      add(it->second, n);
      continue;
    }
    if (byte_fallback_) {
      const bool all_bytes = std::all_of(lookup.begin(), lookup.end(),
                                         [&](char c) { return byte_token_[static_cast<uint8_t>(c)] >= 0; });
      if (all_bytes) {
        for (char c : lookup) add(byte_token_[static_cast<uint8_t>(c)], 1);
        continue;
      }
    }
    if (unk_id_) {
      if (pending_unk_bytes > 0 && fuse_unk_) {
        pending_unk_bytes += n;
      } else {
        if (pending_unk_bytes > 0) add(*unk_id_, pending_unk_bytes);
        pending_unk_bytes = n;
      }
    }
    // Without an unknown token the character is dropped, as tokenizers does.
  }
  if (pending_unk_bytes > 0) add(*unk_id_, pending_unk_bytes);

  // 2. Apply merges lowest rank first (leftmost on ties). Each merge queues at most two new pairs, so
  //    a word of n symbols costs O(n log n).
  auto find_merge = [&](TokenId a, TokenId b) -> const Merge* {
    auto it = merges_.find(pair_key(a, b));
    return it == merges_.end() ? nullptr : &it->second;
  };
  std::priority_queue<QueuedMerge> queue;
  for (size_t i = 0; i + 1 < symbols.size(); ++i) {
    if (const Merge* m = find_merge(symbols[i].id, symbols[i + 1].id))
      queue.push({m->rank, static_cast<int32_t>(i), m->merged});
  }
  while (!queue.empty()) {
    const QueuedMerge top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (left.bytes == 0 || left.next < 0) continue;
    const int32_t right_pos = left.next;
    const Symbol right = symbols[right_pos];
    const Merge* current = find_merge(left.id, right.id);
    if (!current || current->merged != top.merged) continue;  // stale entry

    left.id = top.merged;
    left.bytes += right.bytes;
    left.next = right.next;
    symbols[right_pos].bytes = 0;
    if (right.next >= 0) symbols[right.next].prev = top.pos;

    if (left.prev >= 0) {
      if (const Merge* m = find_merge(symbols[left.prev].id, left.id))
        queue.push({m->rank, left.prev, m->merged});
    }
    if (left.next >= 0) {
      if (const Merge* m = find_merge(left.id, symbols[left.next].id))
        queue.push({m->rank, top.pos, m->merged});
    }
  }
  for (const Symbol& s : symbols)
    if (s.bytes != 0) out.push_back(s.id);
}

}  // namespace ferry
