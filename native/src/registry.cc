// Backend registry: filled by static initialisers (SANA_REGISTER_BACKEND) at load time.
#include "backend.h"
#include <cstring>

namespace sana {
namespace {
constexpr int kMaxBackends = 8;
const BackendOps* g_backends[kMaxBackends];
int g_count = 0;
}  // namespace

void register_backend(const BackendOps* ops) {
  for (int i = 0; i < g_count; i++)
    if (std::strcmp(g_backends[i]->name, ops->name) == 0) return;
  if (g_count < kMaxBackends) g_backends[g_count++] = ops;
}
const BackendOps* find_backend(const char* name) {
  for (int i = 0; i < g_count; i++)
    if (std::strcmp(g_backends[i]->name, name) == 0) return g_backends[i];
  return nullptr;
}
int backend_count() { return g_count; }
const BackendOps* backend_at(int i) { return i >= 0 && i < g_count ? g_backends[i] : nullptr; }

}  // namespace sana
