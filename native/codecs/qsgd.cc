// STUB: replaced by the owner of this codec family.
#include "core/codec.h"

namespace gz {
uint64_t qsgd_fixed_payload_bytes(const Params&, uint64_t) { throw Error(ErrCode::INTERNAL, "native/codecs/qsgd.cc: not implemented yet"); }
uint64_t qsgd_fixed_encode(EncodeArgs&) { throw Error(ErrCode::INTERNAL, "native/codecs/qsgd.cc: not implemented yet"); }
void qsgd_fixed_decode(const DecodeArgs&) { throw Error(ErrCode::INTERNAL, "native/codecs/qsgd.cc: not implemented yet"); }
}  // namespace gz
