// ferry-store.json: reading, checking and writing the packed store's manifest (ferry/experts/packed_store.h).
#include <cstdio>
#include <fstream>
#include <sstream>

#include "ferry/error.h"
#include "ferry/experts/packed_store.h"

namespace ferry::experts {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string hex64(uint64_t v) {
  char b[17];
  std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(v));
  return b;
}

// Reads the manifest's fields; every failure names the manifest and the field.
struct Reader {
  std::string where;
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(where + ": " + what + "; the store is damaged or from another ferry version: convert the model again");
  }
  const json& at(const json& j, const char* key) const {
    if (!j.is_object() || !j.contains(key)) fail("missing field '" + std::string(key) + "'");
    return j[key];
  }
  uint64_t u64(const json& j, const char* key) const {
    const json& v = at(j, key);
    if (!v.is_number_unsigned()) fail("field '" + std::string(key) + "' must be a non-negative integer");
    return v.get<uint64_t>();
  }
  int i32(const json& j, const char* key) const {
    const json& v = at(j, key);
    if (!v.is_number_integer() || v.get<int64_t>() < -1 || v.get<int64_t>() > INT32_MAX)
      fail("field '" + std::string(key) + "' must be an integer");
    return v.get<int>();
  }
  std::string str(const json& j, const char* key) const {
    const json& v = at(j, key);
    if (!v.is_string()) fail("field '" + std::string(key) + "' must be a string");
    return v.get<std::string>();
  }
  uint64_t hex(const json& j, const char* key) const {
    const std::string s = str(j, key);
    if (s.size() != 16 || s.find_first_not_of("0123456789abcdef") != std::string::npos)
      fail("field '" + std::string(key) + "' must be 16 hex digits");
    return std::stoull(s, nullptr, 16);
  }
  DType dtype(const json& j, const char* key) const {
    const std::string s = str(j, key);
    const DType d = dtype_from_string(s);
    if (d == DType::Unknown) fail("field '" + std::string(key) + "': unknown dtype '" + s + "'");
    return d;
  }
  StoreArray array(const json& j) const {
    if (!j.is_array() || j.size() != 2 || !j[0].is_number_unsigned() || !j[1].is_number_unsigned())
      fail("an array must be [offset, bytes]");
    return {j[0].get<uint64_t>(), j[1].get<uint64_t>()};
  }
  StoreMatrix matrix(const json& j) const {
    StoreMatrix m;
    m.dtype = dtype(j, "dtype");
    m.rows = i32(j, "rows");
    m.cols = i32(j, "cols");
    m.cols_padded = i32(j, "cols_padded");
    m.group_size = i32(j, "group_size");
    m.scale_dtype = dtype(j, "scale_dtype");
    m.data = array(at(j, "data"));
    m.scales = array(at(j, "scales"));
    m.zeros = array(at(j, "zeros"));
    if (m.rows <= 0 || m.cols <= 0 || m.cols_padded < m.cols) fail("a matrix has an invalid shape");
    return m;
  }
};

json array_json(const StoreArray& a) { return json::array({a.offset, a.bytes}); }

json matrix_json(const StoreMatrix& m) {
  return {{"dtype", std::string(dtype_name(m.dtype))}, {"rows", m.rows}, {"cols", m.cols},
          {"cols_padded", m.cols_padded}, {"group_size", m.group_size},
          {"scale_dtype", std::string(dtype_name(m.scale_dtype))}, {"data", array_json(m.data)},
          {"scales", array_json(m.scales)}, {"zeros", array_json(m.zeros)}};
}

void check_inside(const Reader& r, const StoreArray& a, uint64_t file_bytes, const std::string& what) {
  if (a.offset > file_bytes || a.bytes > file_bytes - a.offset)
    r.fail(what + " lies past the end of its file (" + std::to_string(a.offset) + " + " +
           std::to_string(a.bytes) + " > " + std::to_string(file_bytes) + " bytes)");
}

}  // namespace

const ExpertChunk* ExpertTierFile::find(int layer, int expert) const {
  for (const ExpertChunk& c : chunks)
    if (c.layer == layer && c.expert == expert) return &c;
  return nullptr;
}

uint64_t ExpertTierFile::stored_bytes() const {
  uint64_t n = 0;
  for (const ExpertChunk& c : chunks) n += c.stored_bytes;
  return n;
}

const ExpertTierFile* StoreManifest::expert_file(DType dtype, int group_size) const {
  for (const ExpertTierFile& f : experts) {
    const DType d = f.gate.dtype;
    if (d == dtype && (d == DType::BF16 || f.group_size == group_size)) return &f;
  }
  return nullptr;
}

const ExpertTierFile& StoreManifest::require_expert_file(DType dtype, int group_size, const std::string& context) const {
  if (const ExpertTierFile* f = expert_file(dtype, group_size)) return *f;
  const std::string name(dtype_name(dtype));
  throw Error(context + "the store " + dir.string() + " has no " + name + " experts" +
              (dtype == DType::BF16 ? "" : " of group " + std::to_string(group_size)) + "; convert with --precision " +
              name);
}

bool is_packed_store(const fs::path& dir) {
  std::error_code ec;
  return fs::is_regular_file(dir / kStoreManifestName, ec);
}

json manifest_to_json(const StoreManifest& m) {
  json dense = {{"file", m.dense_file}, {"bytes", m.dense_bytes}, {"xxh64", hex64(m.dense_xxh64)},
                {"embed", {{"dtype", std::string(dtype_name(m.embed_dtype))}, {"array", array_json(m.embed)}}}};
  json mats = json::object(), vecs = json::object();
  for (const auto& [name, mat] : m.matrices) mats[name] = matrix_json(mat);
  for (const auto& [name, a] : m.vectors) vecs[name] = array_json(a);
  dense["matrices"] = mats;
  dense["vectors"] = vecs;
  json experts = json::array();
  for (const ExpertTierFile& f : m.experts) {
    json chunks = json::array();
    for (const ExpertChunk& c : f.chunks)
      chunks.push_back({c.layer, c.expert, c.offset, c.stored_bytes, c.payload_bytes,
                        c.codec == ChunkCodec::Zstd ? "zstd" : "none", hex64(c.xxh64)});
    json image = json::array();
    for (size_t o : f.image.offset) image.push_back(o);
    experts.push_back({{"precision", f.precision}, {"group_size", f.group_size}, {"file", f.file},
                       {"gate", matrix_json(f.gate)}, {"up", matrix_json(f.up)}, {"down", matrix_json(f.down)},
                       {"image_offsets", image}, {"image_bytes", f.image.bytes},
                       {"chunks_columns", "layer, expert, offset, stored_bytes, payload_bytes, codec, xxh64"},
                       {"chunks", chunks}});
  }
  return {{"format", "ferry-store"}, {"version", kStoreVersion}, {"source", m.source},
          {"dense", dense}, {"experts", experts}};
}

StoreManifest read_store_manifest(const fs::path& dir) {
  const fs::path path = dir / kStoreManifestName;
  Reader r{path.string()};
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open " + path.string() + "; a store directory holds it (made by ferry convert)");
  std::stringstream text;
  text << in.rdbuf();
  json j;
  try {
    j = json::parse(text.str());
  } catch (const json::exception& e) {
    r.fail(std::string("not valid JSON (") + e.what() + ")");
  }
  if (r.str(j, "format") != "ferry-store") r.fail("'format' is not ferry-store");
  if (const int v = r.i32(j, "version"); v != kStoreVersion)
    throw Error(path.string() + ": store version " + std::to_string(v) + ", this ferry reads version " +
                std::to_string(kStoreVersion) + "; convert the model again");
  StoreManifest m;
  m.dir = dir;
  m.source = r.str(j, "source");
  m.config = load_model_config(dir);
  const json& dense = r.at(j, "dense");
  m.dense_file = r.str(dense, "file");
  m.dense_bytes = r.u64(dense, "bytes");
  m.dense_xxh64 = r.hex(dense, "xxh64");
  const json& embed = r.at(dense, "embed");
  m.embed_dtype = r.dtype(embed, "dtype");
  m.embed = r.array(r.at(embed, "array"));
  std::error_code ec;
  const uint64_t dense_size = fs::file_size(dir / m.dense_file, ec);
  if (ec) throw Error("cannot read " + (dir / m.dense_file).string() + ": " + ec.message() + "; the store is incomplete");
  if (dense_size != m.dense_bytes)
    r.fail(m.dense_file + " holds " + std::to_string(dense_size) + " bytes, the manifest says " +
           std::to_string(m.dense_bytes) + " (truncated or replaced)");
  check_inside(r, m.embed, dense_size, "the embedding");
  for (const auto& [name, v] : r.at(dense, "matrices").items()) {
    StoreMatrix mat = r.matrix(v);
    for (const StoreArray* a : {&mat.data, &mat.scales, &mat.zeros}) check_inside(r, *a, dense_size, "matrix " + name);
    m.matrices.emplace(name, mat);
  }
  for (const auto& [name, v] : r.at(dense, "vectors").items()) {
    const StoreArray a = r.array(v);
    check_inside(r, a, dense_size, "vector " + name);
    m.vectors.emplace(name, a);
  }
  for (const json& e : r.at(j, "experts")) {
    ExpertTierFile f;
    f.precision = r.str(e, "precision");
    f.group_size = r.i32(e, "group_size");
    f.file = r.str(e, "file");
    f.gate = r.matrix(r.at(e, "gate"));
    f.up = r.matrix(r.at(e, "up"));
    f.down = r.matrix(r.at(e, "down"));
    const json& offs = r.at(e, "image_offsets");
    if (!offs.is_array() || offs.size() != 9) r.fail("'image_offsets' must list 9 offsets");
    for (int i = 0; i < 9; ++i) f.image.offset[i] = offs[i].get<size_t>();
    f.image.bytes = r.u64(e, "image_bytes");
    const uint64_t file_size = fs::file_size(dir / f.file, ec);
    if (ec) throw Error("cannot read " + (dir / f.file).string() + ": " + ec.message() + "; the store is incomplete");
    for (const json& c : r.at(e, "chunks")) {
      if (!c.is_array() || c.size() != 7) r.fail("an expert chunk must have 7 columns");
      ExpertChunk k;
      k.layer = c[0].get<int>();
      k.expert = c[1].get<int>();
      k.offset = c[2].get<uint64_t>();
      k.stored_bytes = c[3].get<uint64_t>();
      k.payload_bytes = c[4].get<uint64_t>();
      const std::string codec = c[5].get<std::string>();
      if (codec != "none" && codec != "zstd") r.fail("unknown chunk codec '" + codec + "'");
      k.codec = codec == "zstd" ? ChunkCodec::Zstd : ChunkCodec::None;
      k.xxh64 = std::stoull(c[6].get<std::string>(), nullptr, 16);
      if (k.layer < 0 || k.layer >= m.config.n_layer || k.expert < 0 || k.expert >= m.config.n_expert)
        r.fail("chunk of layer " + std::to_string(k.layer) + ", expert " + std::to_string(k.expert) +
               " is outside the model");
      if (k.payload_bytes > k.stored_bytes || (k.codec == ChunkCodec::None && k.payload_bytes != f.image.bytes))
        r.fail("chunk of layer " + std::to_string(k.layer) + ", expert " + std::to_string(k.expert) +
               " has inconsistent sizes");
      check_inside(r, {k.offset, k.stored_bytes}, file_size,
                   "expert chunk (layer " + std::to_string(k.layer) + ", expert " + std::to_string(k.expert) + ") of " + f.file);
      f.chunks.push_back(k);
    }
    if (f.chunks.size() != static_cast<size_t>(m.config.n_moe_layers()) * m.config.n_expert)
      r.fail(f.file + " lists " + std::to_string(f.chunks.size()) + " expert chunks, the model has " +
             std::to_string(static_cast<size_t>(m.config.n_moe_layers()) * m.config.n_expert));
    m.experts.push_back(std::move(f));
  }
  if (m.experts.empty()) r.fail("no expert file");
  return m;
}

cpu::PackedMatrix matrix_view(const StoreMatrix& m, const uint8_t* base) {
  cpu::PackedMatrix shape;
  shape.dtype = m.dtype;
  shape.rows = m.rows;
  shape.cols = m.cols;
  shape.cols_padded = m.cols_padded;
  shape.group_size = m.group_size;
  shape.scale_dtype = m.scale_dtype;
  shape.data = cpu::AlignedBytes::view(nullptr, m.data.bytes);
  shape.scales = cpu::AlignedBytes::view(nullptr, m.scales.bytes);
  shape.zeros = cpu::AlignedBytes::view(nullptr, m.zeros.bytes);
  if (!base) return shape;
  auto* b = const_cast<uint8_t*>(base);
  auto at = [&](const StoreArray& a) -> uint8_t* { return a.bytes ? b + a.offset : nullptr; };
  return cpu::packed_view(shape, at(m.data), at(m.scales), at(m.zeros));
}

}  // namespace ferry::experts
