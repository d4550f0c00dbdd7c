// What the models accept as an input tensor: a backend Tensor, or host data with its shape.
import type { Tensor } from '../../native/api.ts';

/** Host data with its shape, accepted wherever a Tensor input is. */
export interface HostArray { data: Float32Array; shape: readonly number[] }
export type TensorInput = Tensor | HostArray;

export const isHost = (x: TensorInput): x is HostArray => (x as HostArray).data instanceof Float32Array;
