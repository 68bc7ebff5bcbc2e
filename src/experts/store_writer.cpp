// ferry convert: a checkpoint packed once into a store (ferry/experts/packed_store.h), one layer at a time.
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "exec/cpu/cpu_weights.h"
#include "experts/mapped_file.h"
#include "ferry/checkpoint.h"
#include "ferry/cpu_model.h"
#include "ferry/error.h"
#include "ferry/experts/chunk_reader.h"
#include "ferry/experts/packed_store.h"

namespace ferry::experts {

namespace fs = std::filesystem;

namespace {

constexpr size_t kDenseAlign = 64;  // AlignedBytes' alignment: a mapped array is used where it lies
const char* const kPartial = ".partial";

uint64_t round_up(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

// A file written front to back under a temporary name, every write checked, renamed by finish().
class OutFile {
 public:
  OutFile(fs::path final_path) : final_(std::move(final_path)), tmp_(final_.string() + kPartial) {
    f_ = std::fopen(tmp_.c_str(), "wb");
    if (!f_) throw Error("cannot create " + tmp_.string() + ": " + std::strerror(errno));
  }
  ~OutFile() {
    if (f_) {
      std::fclose(f_);
      std::error_code ec;
      fs::remove(tmp_, ec);
    }
  }
  uint64_t size() const { return at_; }
  // Pads to `align`, writes, returns where the bytes went.
  StoreArray write(const void* p, size_t n, size_t align) {
    pad_to(round_up(at_, align));
    StoreArray a{at_, n};
    put(p, n);
    return a;
  }
  void pad_to(uint64_t target) {
    static const char zeros[4096] = {};
    while (at_ < target) put(zeros, static_cast<size_t>(std::min<uint64_t>(sizeof zeros, target - at_)));
  }
  void finish() {
    if (std::fflush(f_) != 0 || std::ferror(f_)) fail();
    if (std::fclose(f_) != 0) {
      f_ = nullptr;
      fail();
    }
    f_ = nullptr;
    fs::rename(tmp_, final_);
  }

 private:
  void put(const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, f_) != n) fail();
    at_ += n;
  }
  [[noreturn]] void fail() {
    throw Error("cannot write " + tmp_.string() + ": " + std::strerror(errno ? errno : EIO) +
                " (is the disk full?); nothing of the store is kept until it is complete");
  }
  fs::path final_, tmp_;
  std::FILE* f_ = nullptr;
  uint64_t at_ = 0;
};

StoreMatrix put_matrix(OutFile& f, const cpu::PackedMatrix& m) {
  StoreMatrix s;
  s.dtype = m.dtype;
  s.rows = m.rows;
  s.cols = m.cols;
  s.cols_padded = m.cols_padded;
  s.group_size = m.group_size;
  s.scale_dtype = m.scale_dtype;
  s.data = f.write(m.data.data(), m.data.size(), kDenseAlign);
  s.scales = f.write(m.scales.data(), m.scales.size(), kDenseAlign);
  s.zeros = f.write(m.zeros.data(), m.zeros.size(), kDenseAlign);
  return s;
}

// The shape of an expert matrix with its arrays' offsets inside the image.
StoreMatrix image_matrix(const cpu::PackedMatrix& m, const ExpertImage& img, int i) {
  StoreMatrix s;
  s.dtype = m.dtype;
  s.rows = m.rows;
  s.cols = m.cols;
  s.cols_padded = m.cols_padded;
  s.group_size = m.group_size;
  s.scale_dtype = m.scale_dtype;
  s.data = {img.offset[i * 3], m.data.size()};
  s.scales = {img.offset[i * 3 + 1], m.scales.size()};
  s.zeros = {img.offset[i * 3 + 2], m.zeros.size()};
  return s;
}

std::string precision_name(DType d) {
  return d == DType::BF16 ? "bf16" : d == DType::I8 ? "int8" : d == DType::I4 ? "int4" : "?";
}

struct ExpertWriter {
  ExpertTierFile tier;
  OutFile file;
  AlignedBuffer image_buf;
  std::vector<uint8_t> zbuf;
  ExpertWriter(ExpertTierFile t, const fs::path& dir) : tier(std::move(t)), file(dir / tier.file) {}
};

void copy_side_files(const fs::path& from, const fs::path& to) {
  for (const char* name : {"config.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                           "generation_config.json", "special_tokens_map.json"}) {
    std::error_code ec;
    if (!fs::exists(from / name, ec)) continue;
    fs::copy_file(from / name, to / name, fs::copy_options::overwrite_existing, ec);
    if (ec) throw Error("cannot copy " + (from / name).string() + " to " + to.string() + ": " + ec.message());
  }
}

}  // namespace

ConvertResult convert_to_store(const Checkpoint& ckpt, const fs::path& out, const ConvertOptions& o) {
  std::error_code ec;
  if (fs::exists(out, ec) && !(fs::is_directory(out, ec) && fs::is_empty(out, ec)))
    throw Error("the store directory " + out.string() + " exists and is not empty; pick a new path or remove it");
  if (o.precisions.empty()) throw Error("convert: name at least one expert precision (bf16, int8, int4)");
  const ModelConfig& c = ckpt.config();
  fs::create_directories(out, ec);
  if (ec) throw Error("cannot create " + out.string() + ": " + ec.message());
  const fs::path manifest_path = out / kStoreManifestName;

  const std::unique_ptr<WeightSource> src = checkpoint_weight_source(ckpt);
  CpuModelOptions popt;  // dense weights: bf16 as the cpu target packs them
  popt.group_size = o.group_size;
  StoreManifest m;
  m.dir = out;
  m.source = fs::absolute(ckpt.dir()).string();
  m.config = c;
  ConvertResult res;
  for (const StoredTensorInfo& t : ckpt.stored_tensors()) res.source_bytes += t.bytes;

  OutFile dense(out / m.dense_file);
  {
    cpu_target::CpuWeights g = cpu_target::pack_globals(*src, popt);
    if (!g.embed_bf16.empty()) {
      m.embed_dtype = DType::BF16;
      m.embed = dense.write(g.embed_bf16.data(), g.embed_bf16.size() * 2, kDenseAlign);
    } else {
      m.embed_dtype = DType::F32;
      m.embed = dense.write(g.embed_f32.data(), g.embed_f32.size() * 4, kDenseAlign);
    }
    auto vec = [&](const std::string& name, const std::vector<float>& v) {
      if (!v.empty()) m.vectors[name] = dense.write(v.data(), v.size() * sizeof(float), kDenseAlign);
    };
    vec("final_norm", g.final_norm);
    vec("final_norm_bias", g.final_norm_bias);
    vec("lm_head_bias", g.lm_head_bias);
    m.matrices["lm_head"] = put_matrix(dense, g.lm_head);
  }

  std::vector<std::unique_ptr<ExpertWriter>> writers;
  for (DType d : o.precisions) {
    if (d != DType::BF16 && d != DType::I8 && d != DType::I4)
      throw Error("convert: expert precision must be bf16, int8 or int4");
    ExpertTierFile t;
    t.precision = precision_name(d);
    t.group_size = d == DType::BF16 ? 0 : o.group_size;
    t.file = "experts-" + t.precision + (d == DType::BF16 ? "" : "-g" + std::to_string(o.group_size)) + ".bin";
    for (const auto& w : writers)
      if (w->tier.file == t.file) throw Error("convert: precision " + t.precision + " is named twice");
    writers.push_back(std::make_unique<ExpertWriter>(std::move(t), out));
  }

  ZSTD_CCtx* zctx = o.zstd ? ZSTD_createCCtx() : nullptr;
  struct FreeCtx {
    ZSTD_CCtx* p;
    ~FreeCtx() { ZSTD_freeCCtx(p); }
  } free_ctx{zctx};

  for (int l = 0; l < c.n_layer; ++l) {
    const cpu_target::CpuLayerWeights L = cpu_target::pack_layer(*src, popt, l, false);
    const std::string p = "layers." + std::to_string(l) + ".";
    auto vec = [&](const std::string& name, const std::vector<float>& v) {
      if (!v.empty()) m.vectors[p + name] = dense.write(v.data(), v.size() * sizeof(float), kDenseAlign);
    };
    auto mat = [&](const std::string& name, const cpu::PackedMatrix& w) {
      if (w.rows) m.matrices[p + name] = put_matrix(dense, w);
    };
    vec("attn_norm", L.attn_norm);
    vec("attn_norm_bias", L.attn_norm_bias);
    vec("ffn_norm", L.ffn_norm);
    vec("ffn_norm_bias", L.ffn_norm_bias);
    mat("wqkv", L.wqkv);
    vec("bqkv", L.bqkv);
    mat("wo", L.wo);
    vec("bo", L.bo);
    vec("q_norm", L.q_norm);
    vec("k_norm", L.k_norm);
    mat("router", L.router);
    mat("shared.gate", L.shared.gate);
    mat("shared.up", L.shared.up);
    mat("shared.down", L.shared.down);
    mat("shared_gate", L.shared_gate);
    mat("dense.gate", L.dense.gate);
    mat("dense.up", L.dense.up);
    mat("dense.down", L.dense.down);

    if (L.is_moe) {
      for (auto& w : writers) {
        ExpertTierFile& t = w->tier;
        const DType d = dtype_from_string(t.precision);
        for (int e = 0; e < c.n_expert; ++e) {
          const cpu_target::PackedMlp x = cpu_target::pack_expert(*src, l, e, d, o.group_size);
          if (t.image.bytes == 0) {
            t.image = image_layout(x);
            t.gate = image_matrix(x.gate, t.image, 0);
            t.up = image_matrix(x.up, t.image, 1);
            t.down = image_matrix(x.down, t.image, 2);
            w->image_buf = AlignedBuffer(round_up(t.image.bytes, kChunkAlign));
            if (zctx) w->zbuf.resize(ZSTD_compressBound(t.image.bytes));
          }
          std::memset(w->image_buf.data(), 0, w->image_buf.size());
          write_image(x, t.image, reinterpret_cast<std::byte*>(w->image_buf.data()));
          ExpertChunk k;
          k.layer = l;
          k.expert = e;
          const uint8_t* payload = w->image_buf.data();
          k.payload_bytes = t.image.bytes;
          if (zctx) {
            const size_t z = ZSTD_compressCCtx(zctx, w->zbuf.data(), w->zbuf.size(), payload, t.image.bytes,
                                               o.zstd_level);
            if (ZSTD_isError(z)) throw Error(std::string("zstd: ") + ZSTD_getErrorName(z));
            if (round_up(z, kChunkAlign) < round_up(t.image.bytes, kChunkAlign)) {  // saved at least a page
              k.codec = ChunkCodec::Zstd;
              payload = w->zbuf.data();
              k.payload_bytes = z;
              ++res.zstd_chunks;
            }
          }
          k.xxh64 = xxhash64(payload, k.payload_bytes);
          k.stored_bytes = round_up(k.payload_bytes, kChunkAlign);
          k.offset = w->file.write(payload, k.payload_bytes, kChunkAlign).offset;
          w->file.pad_to(k.offset + k.stored_bytes);
          t.chunks.push_back(k);
          ++res.chunks;
        }
      }
    }
    if (o.progress) {
      uint64_t written = dense.size();
      for (const auto& w : writers) written += w->file.size();
      o.progress(l + 1, c.n_layer, written);
    }
  }

  m.dense_bytes = dense.size();
  dense.finish();
  res.dense_bytes = m.dense_bytes;
  {
    const MappedFile dense_map(out / m.dense_file);
    m.dense_xxh64 = xxhash64(dense_map.data(), dense_map.size());
  }
  for (auto& w : writers) {
    res.expert_bytes += w->file.size();
    w->file.finish();
    m.experts.push_back(std::move(w->tier));
  }
  copy_side_files(ckpt.dir(), out);
  {
    OutFile mf(manifest_path);  // last: a store without it does not open
    const std::string text = manifest_to_json(m).dump(1) + "\n";
    mf.write(text.data(), text.size(), 1);
    mf.finish();
  }
  return res;
}

}  // namespace ferry::experts
