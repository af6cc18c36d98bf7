// Original file: proto/agon.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { CoordinatorMessage as _agon_v1_CoordinatorMessage, CoordinatorMessage__Output as _agon_v1_CoordinatorMessage__Output } from '../../agon/v1/CoordinatorMessage.js';
import type { FetchParamsRequest as _agon_v1_FetchParamsRequest, FetchParamsRequest__Output as _agon_v1_FetchParamsRequest__Output } from '../../agon/v1/FetchParamsRequest.js';
import type { GradientChunk as _agon_v1_GradientChunk, GradientChunk__Output as _agon_v1_GradientChunk__Output } from '../../agon/v1/GradientChunk.js';
import type { JoinRequest as _agon_v1_JoinRequest, JoinRequest__Output as _agon_v1_JoinRequest__Output } from '../../agon/v1/JoinRequest.js';
import type { JoinResponse as _agon_v1_JoinResponse, JoinResponse__Output as _agon_v1_JoinResponse__Output } from '../../agon/v1/JoinResponse.js';
import type { ParamChunk as _agon_v1_ParamChunk, ParamChunk__Output as _agon_v1_ParamChunk__Output } from '../../agon/v1/ParamChunk.js';
import type { RunInfoReply as _agon_v1_RunInfoReply, RunInfoReply__Output as _agon_v1_RunInfoReply__Output } from '../../agon/v1/RunInfoReply.js';
import type { RunInfoRequest as _agon_v1_RunInfoRequest, RunInfoRequest__Output as _agon_v1_RunInfoRequest__Output } from '../../agon/v1/RunInfoRequest.js';
import type { StatusReply as _agon_v1_StatusReply, StatusReply__Output as _agon_v1_StatusReply__Output } from '../../agon/v1/StatusReply.js';
import type { StatusRequest as _agon_v1_StatusRequest, StatusRequest__Output as _agon_v1_StatusRequest__Output } from '../../agon/v1/StatusRequest.js';
import type { SubmitReply as _agon_v1_SubmitReply, SubmitReply__Output as _agon_v1_SubmitReply__Output } from '../../agon/v1/SubmitReply.js';
import type { WorkerMessage as _agon_v1_WorkerMessage, WorkerMessage__Output as _agon_v1_WorkerMessage__Output } from '../../agon/v1/WorkerMessage.js';

export interface CoordinatorClient extends grpc.Client {
  /**
   * A network's parameters at a version, in chunks (when a NATS broadcast was missed).
   * Net "EVAL" is the generator an evaluation microtask evaluates (version = its step).
   */
  FetchParams(argument: _agon_v1_FetchParamsRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_agon_v1_ParamChunk__Output>;
  FetchParams(argument: _agon_v1_FetchParamsRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_agon_v1_ParamChunk__Output>;
  /**
   * A network's parameters at a version, in chunks (when a NATS broadcast was missed).
   * Net "EVAL" is the generator an evaluation microtask evaluates (version = its step).
   */
  fetchParams(argument: _agon_v1_FetchParamsRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_agon_v1_ParamChunk__Output>;
  fetchParams(argument: _agon_v1_FetchParamsRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_agon_v1_ParamChunk__Output>;
  
  /**
   * A worker announces itself; the answer carries its id, lease and the run config.
   * Refused (FAILED_PRECONDITION) when the worker's dataset fingerprint is not the run's.
   */
  Join(argument: _agon_v1_JoinRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_agon_v1_JoinResponse__Output>): grpc.ClientUnaryCall;
  Join(argument: _agon_v1_JoinRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_agon_v1_JoinResponse__Output>): grpc.ClientUnaryCall;
  Join(argument: _agon_v1_JoinRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_agon_v1_JoinResponse__Output>): grpc.ClientUnaryCall;
  Join(argument: _agon_v1_JoinRequest, callback: grpc.requestCallback<_agon_v1_JoinResponse__Output>): grpc.ClientUnaryCall;
  /**
   * A worker announces itself; the answer carries its id, lease and the run config.
   * Refused (FAILED_PRECONDITION) when the worker's dataset fingerprint is not the run's.
   */
  join(argument: _agon_v1_JoinRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_agon_v1_JoinResponse__Output>): grpc.ClientUnaryCall;
  join(argument: _agon_v1_JoinRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_agon_v1_JoinResponse__Output>): grpc.ClientUnaryCall;
  join(argument: _agon_v1_JoinRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_agon_v1_JoinResponse__Output>): grpc.ClientUnaryCall;
  join(argument: _agon_v1_JoinRequest, callback: grpc.requestCallback<_agon_v1_JoinResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * The run's config and dataset fingerprint, without joining: a worker opens
   * its copy of the dataset and checks it before it joins.
   */
  RunInfo(argument: _agon_v1_RunInfoRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_agon_v1_RunInfoReply__Output>): grpc.ClientUnaryCall;
  RunInfo(argument: _agon_v1_RunInfoRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_agon_v1_RunInfoReply__Output>): grpc.ClientUnaryCall;
  RunInfo(argument: _agon_v1_RunInfoRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_agon_v1_RunInfoReply__Output>): grpc.ClientUnaryCall;
  RunInfo(argument: _agon_v1_RunInfoRequest, callback: grpc.requestCallback<_agon_v1_RunInfoReply__Output>): grpc.ClientUnaryCall;
  /**
   * The run's config and dataset fingerprint, without joining: a worker opens
   * its copy of the dataset and checks it before it joins.
   */
  runInfo(argument: _agon_v1_RunInfoRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_agon_v1_RunInfoReply__Output>): grpc.ClientUnaryCall;
  runInfo(argument: _agon_v1_RunInfoRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_agon_v1_RunInfoReply__Output>): grpc.ClientUnaryCall;
  runInfo(argument: _agon_v1_RunInfoRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_agon_v1_RunInfoReply__Output>): grpc.ClientUnaryCall;
  runInfo(argument: _agon_v1_RunInfoRequest, callback: grpc.requestCallback<_agon_v1_RunInfoReply__Output>): grpc.ClientUnaryCall;
  
  Status(argument: _agon_v1_StatusRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_agon_v1_StatusReply__Output>): grpc.ClientUnaryCall;
  Status(argument: _agon_v1_StatusRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_agon_v1_StatusReply__Output>): grpc.ClientUnaryCall;
  Status(argument: _agon_v1_StatusRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_agon_v1_StatusReply__Output>): grpc.ClientUnaryCall;
  Status(argument: _agon_v1_StatusRequest, callback: grpc.requestCallback<_agon_v1_StatusReply__Output>): grpc.ClientUnaryCall;
  status(argument: _agon_v1_StatusRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_agon_v1_StatusReply__Output>): grpc.ClientUnaryCall;
  status(argument: _agon_v1_StatusRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_agon_v1_StatusReply__Output>): grpc.ClientUnaryCall;
  status(argument: _agon_v1_StatusRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_agon_v1_StatusReply__Output>): grpc.ClientUnaryCall;
  status(argument: _agon_v1_StatusRequest, callback: grpc.requestCallback<_agon_v1_StatusReply__Output>): grpc.ClientUnaryCall;
  
  /**
   * One microtask's gradient, in chunks; the first chunk carries the header.
   */
  SubmitGradients(metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_agon_v1_SubmitReply__Output>): grpc.ClientWritableStream<_agon_v1_GradientChunk>;
  SubmitGradients(metadata: grpc.Metadata, callback: grpc.requestCallback<_agon_v1_SubmitReply__Output>): grpc.ClientWritableStream<_agon_v1_GradientChunk>;
  SubmitGradients(options: grpc.CallOptions, callback: grpc.requestCallback<_agon_v1_SubmitReply__Output>): grpc.ClientWritableStream<_agon_v1_GradientChunk>;
  SubmitGradients(callback: grpc.requestCallback<_agon_v1_SubmitReply__Output>): grpc.ClientWritableStream<_agon_v1_GradientChunk>;
  /**
   * One microtask's gradient, in chunks; the first chunk carries the header.
   */
  submitGradients(metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_agon_v1_SubmitReply__Output>): grpc.ClientWritableStream<_agon_v1_GradientChunk>;
  submitGradients(metadata: grpc.Metadata, callback: grpc.requestCallback<_agon_v1_SubmitReply__Output>): grpc.ClientWritableStream<_agon_v1_GradientChunk>;
  submitGradients(options: grpc.CallOptions, callback: grpc.requestCallback<_agon_v1_SubmitReply__Output>): grpc.ClientWritableStream<_agon_v1_GradientChunk>;
  submitGradients(callback: grpc.requestCallback<_agon_v1_SubmitReply__Output>): grpc.ClientWritableStream<_agon_v1_GradientChunk>;
  
  /**
   * The worker's session: the coordinator pushes microtasks and cancellations,
   * the worker sends heartbeats and acks. Stream end = the worker is gone.
   */
  Work(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_agon_v1_WorkerMessage, _agon_v1_CoordinatorMessage__Output>;
  Work(options?: grpc.CallOptions): grpc.ClientDuplexStream<_agon_v1_WorkerMessage, _agon_v1_CoordinatorMessage__Output>;
  /**
   * The worker's session: the coordinator pushes microtasks and cancellations,
   * the worker sends heartbeats and acks. Stream end = the worker is gone.
   */
  work(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_agon_v1_WorkerMessage, _agon_v1_CoordinatorMessage__Output>;
  work(options?: grpc.CallOptions): grpc.ClientDuplexStream<_agon_v1_WorkerMessage, _agon_v1_CoordinatorMessage__Output>;
  
}

export interface CoordinatorHandlers extends grpc.UntypedServiceImplementation {
  /**
   * A network's parameters at a version, in chunks (when a NATS broadcast was missed).
   * Net "EVAL" is the generator an evaluation microtask evaluates (version = its step).
   */
  FetchParams: grpc.handleServerStreamingCall<_agon_v1_FetchParamsRequest__Output, _agon_v1_ParamChunk>;
  
  /**
   * A worker announces itself; the answer carries its id, lease and the run config.
   * Refused (FAILED_PRECONDITION) when the worker's dataset fingerprint is not the run's.
   */
  Join: grpc.handleUnaryCall<_agon_v1_JoinRequest__Output, _agon_v1_JoinResponse>;
  
  /**
   * The run's config and dataset fingerprint, without joining: a worker opens
   * its copy of the dataset and checks it before it joins.
   */
  RunInfo: grpc.handleUnaryCall<_agon_v1_RunInfoRequest__Output, _agon_v1_RunInfoReply>;
  
  Status: grpc.handleUnaryCall<_agon_v1_StatusRequest__Output, _agon_v1_StatusReply>;
  
  /**
   * One microtask's gradient, in chunks; the first chunk carries the header.
   */
  SubmitGradients: grpc.handleClientStreamingCall<_agon_v1_GradientChunk__Output, _agon_v1_SubmitReply>;
  
  /**
   * The worker's session: the coordinator pushes microtasks and cancellations,
   * the worker sends heartbeats and acks. Stream end = the worker is gone.
   */
  Work: grpc.handleBidiStreamingCall<_agon_v1_WorkerMessage__Output, _agon_v1_CoordinatorMessage>;
  
}

export interface CoordinatorDefinition extends grpc.ServiceDefinition {
  FetchParams: MethodDefinition<_agon_v1_FetchParamsRequest, _agon_v1_ParamChunk, _agon_v1_FetchParamsRequest__Output, _agon_v1_ParamChunk__Output>
  Join: MethodDefinition<_agon_v1_JoinRequest, _agon_v1_JoinResponse, _agon_v1_JoinRequest__Output, _agon_v1_JoinResponse__Output>
  RunInfo: MethodDefinition<_agon_v1_RunInfoRequest, _agon_v1_RunInfoReply, _agon_v1_RunInfoRequest__Output, _agon_v1_RunInfoReply__Output>
  Status: MethodDefinition<_agon_v1_StatusRequest, _agon_v1_StatusReply, _agon_v1_StatusRequest__Output, _agon_v1_StatusReply__Output>
  SubmitGradients: MethodDefinition<_agon_v1_GradientChunk, _agon_v1_SubmitReply, _agon_v1_GradientChunk__Output, _agon_v1_SubmitReply__Output>
  Work: MethodDefinition<_agon_v1_WorkerMessage, _agon_v1_CoordinatorMessage, _agon_v1_WorkerMessage__Output, _agon_v1_CoordinatorMessage__Output>
}
