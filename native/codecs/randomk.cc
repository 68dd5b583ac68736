// STUB: replaced by the owner of this codec family.
#include "core/codec.h"

namespace gz {
uint64_t randomk_payload_bytes(const Params&, uint64_t) { throw Error(ErrCode::INTERNAL, "native/codecs/randomk.cc: not implemented yet"); }
uint64_t randomk_encode(EncodeArgs&) { throw Error(ErrCode::INTERNAL, "native/codecs/randomk.cc: not implemented yet"); }
void randomk_decode(const DecodeArgs&) { throw Error(ErrCode::INTERNAL, "native/codecs/randomk.cc: not implemented yet"); }
void randomk_indices(uint64_t, uint64_t, uint64_t, uint64_t*) { throw Error(ErrCode::INTERNAL, "native/codecs/randomk.cc: not implemented yet"); }
}  // namespace gz
