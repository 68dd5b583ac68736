// STUB: replaced by the owner of this codec family.
#include "core/codec.h"

namespace gz {
uint64_t topk_max_payload(const Params&, uint64_t) { throw Error(ErrCode::INTERNAL, "native/codecs/topk.cc: not implemented yet"); }
uint64_t topk_encode(EncodeArgs&) { throw Error(ErrCode::INTERNAL, "native/codecs/topk.cc: not implemented yet"); }
void topk_validate(const Header&) { throw Error(ErrCode::INTERNAL, "native/codecs/topk.cc: not implemented yet"); }
void topk_decode(const DecodeArgs&) { throw Error(ErrCode::INTERNAL, "native/codecs/topk.cc: not implemented yet"); }
}  // namespace gz
