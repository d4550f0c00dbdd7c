// embedding: rows of table (V, D) gathered by integer ids; ids are checked against V.
#include "common.h"
#include <cstring>
#include <string>

namespace sana {

Status embedding_cpu(void* out, const void* table, const void* ids, int64_t n_ids, int64_t V, int64_t D, DType dt, DType ids_dt) {
  thread_local std::string err;
  auto id_at = [&](int64_t i) -> int64_t { return ids_dt == DType::I32 ? int64_t(static_cast<const int32_t*>(ids)[i]) : static_cast<const int64_t*>(ids)[i]; };
  for (int64_t i = 0; i < n_ids; i++) {
    const int64_t id = id_at(i);
    if (id < 0 || id >= V) {
      err = "embedding: ids[" + std::to_string(i) + "] = " + std::to_string(id) + " is outside the table's " + std::to_string(V) + " rows";
      return err.c_str();
    }
  }
  const size_t row = size_t(D) * dtype_size(dt);
#pragma omp parallel for if (n_ids * D > cpu::kParallelMin) schedule(static)
  for (int64_t i = 0; i < n_ids; i++) std::memcpy(static_cast<char*>(out) + size_t(i) * row, static_cast<const char*>(table) + size_t(id_at(i)) * row, row);
  return nullptr;
}

}  // namespace sana
